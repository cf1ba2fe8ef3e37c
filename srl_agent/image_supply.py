"""The task images a dataset names, on this engine before any model work: present, pulled from their
registry, or built (the project's own task images, from ``environments/``).

``pull`` says what happens to a published image: ``missing`` pulls the ones the engine lacks, ``always``
pulls every one again (a refresh), ``never`` makes a missing one an error. The project's own images
(``srl-agent/…``) are built, never pulled: no registry has them. A pull that fails names the image and
the way in without a registry: ``docker save`` it where one answers, ``docker load -i FILE`` here.

``ImageSupply`` remembers what it pulled that the engine did not have before; with ``prune`` its
``release`` removes exactly those (SWE-bench's images take hundreds of GB), never an image that was
there already. ``images.ensure_images`` is the one-call form, for callers that do not prune.
"""

from __future__ import annotations

from typing import Any

PULL_MODES = ("missing", "never", "always")
OWN_PREFIX = "srl-agent/"
LOAD_HINT = ("Without a registry: `docker save IMAGE -o FILE` where one answers, then `docker load -i FILE` "
             "here (a loaded image counts as present).")
_LISTED = 10  # images named in one error line; SWE-bench has 500


class ImageSupplyError(ValueError):
    """A task image that is not on this engine and could not be got; the message names it."""


def is_present(client: Any, image: str) -> bool:
    import docker

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def missing_images(client: Any, images: Any) -> list[str]:
    """The images of ``images`` (order kept, each once) that this engine lacks."""
    return [i for i in dict.fromkeys(images) if not is_present(client, i)]


def registry_of(image: str) -> str:
    """The registry an image reference pulls from (``docker.io`` for a bare ``owner/name``)."""
    from docker.auth import resolve_repository_name
    from docker.utils import parse_repository_tag

    return resolve_repository_name(parse_repository_tag(image)[0])[0]


def _listing(items: list[str]) -> str:
    more = len(items) - _LISTED
    return "; ".join(items[:_LISTED]) + (f"; and {more} more" if more > 0 else "")


class LayerProgress:
    """Bytes downloaded of bytes to download, summed over an image's layers, from the engine's pull
    events (one per layer and step; a layer the engine has already needs no bytes)."""

    _WAITING = ("Pulling fs layer", "Waiting", "Verifying Checksum")
    _DONE = ("Download complete", "Extracting", "Pull complete")

    def __init__(self) -> None:
        self._layers: dict[str, tuple[int, int]] = {}

    def feed(self, event: dict[str, Any]) -> None:
        layer, status = event.get("id"), event.get("status") or ""
        if not layer:
            return
        done, total = self._layers.get(layer, (0, 0))
        detail = event.get("progressDetail") or {}
        if status == "Downloading" and detail.get("total"):
            done, total = int(detail.get("current") or 0), int(detail["total"])
        elif status in self._DONE:
            done = total
        elif status not in self._WAITING:  # e.g. "Pulling from …" (its id is the tag), "Already exists"
            return
        self._layers[layer] = (done, total)

    @property
    def done(self) -> int:
        return sum(d for d, _ in self._layers.values())

    @property
    def total(self) -> int:
        return sum(t for _, t in self._layers.values())


def pull_image(client: Any, image: str, bar: Any) -> None:
    """Pull ``image``, its layers' bytes shown on ``bar`` (a ``tasks.progress_bar``) in MB. Raises
    ``docker.errors.APIError`` as the engine reports a failure (no registry, no such image)."""
    import docker
    from docker.utils import parse_repository_tag

    repo, tag = parse_repository_tag(image)
    job = bar.add_task(f"pull {image} (MB)", total=None)
    layers = LayerProgress()
    try:
        for event in client.api.pull(repo, tag or "latest", stream=True, decode=True):
            if event.get("error"):  # a failure after the stream began (a layer, the disk)
                raise docker.errors.APIError(event["error"])
            layers.feed(event)
            bar.update(job, completed=round(layers.done / 1e6, 1), total=round(layers.total / 1e6, 1) or None)
        if not is_present(client, image):
            raise docker.errors.APIError(f"the engine reported no error, yet {image} is not there after the pull")
    except docker.errors.APIError:
        bar.remove_task(job)  # the error line says what happened; a dead bar would be a second line
        raise


def _reason(error: Any) -> str:
    return " ".join(str(getattr(error, "explanation", None) or error).split())


class ImageSupply:
    """Task images for one run. ``ensure`` may be called more than once (each image is seen once);
    ``release`` ends the run: with ``prune`` it removes the images this supply brought onto the engine.

    ``client``: a docker client (None: one from the environment, closed by ``release``). ``progress``:
    True for a pull progress bar on stderr, a rich ``Console`` for one on it (nested in its live display).
    """

    def __init__(self, client: Any = None, *, pull: str = "missing", prune: bool = False, progress: Any = True):
        if pull not in PULL_MODES:
            raise ValueError(f"pull: {pull!r}; known: {', '.join(PULL_MODES)}")
        self.pull, self.prune, self.progress = pull, prune, progress
        self._own = client is None
        self._client = client
        self._seen: set[str] = set()
        self.pulled: list[str] = []  # absent before this run, pulled by it: what prune removes
        self.pruned: list[str] = []

    @property
    def client(self) -> Any:
        if self._client is None:
            import docker

            self._client = docker.from_env()
        return self._client

    def ensure(self, rows: list[dict[str, Any]], bundled: bool = False) -> list[str]:
        """Make every row's ``image`` present: the project's own built (every row's when ``bundled``),
        the others pulled as ``pull`` says. Returns what this call pulled that was not there before.
        Raises ``ImageSupplyError`` naming each image it could not get."""
        fresh = [r for r in rows if r["image"] not in self._seen]
        self._seen.update(r["image"] for r in fresh)
        # A SWE-smith row runs in a small image of its own, built FROM its repository's published image
        # at the instance's branch: that published image is what gets pulled (evaluation/swesmith.py).
        derived = [r for r in fresh if r.get("swesmith_image")]
        sources = [{"instance_id": r["instance_id"], "image": r["swesmith_image"]} for r in derived
                   if self.pull == "always" or not is_present(self.client, r["image"])]
        fresh = [r for r in fresh if not r.get("swesmith_image")] + sources
        own = [bundled or r["image"].startswith(OWN_PREFIX) for r in fresh]
        self._build([r for r, mine in zip(fresh, own, strict=True) if mine])
        published = list(dict.fromkeys(r["image"] for r, mine in zip(fresh, own, strict=True) if not mine))
        absent = missing_images(self.client, published)
        if self.pull == "never" and absent:
            raise ImageSupplyError(f"{len(absent)} task image(s) not on this engine, and pulling is off "
                                   f"(--pull never): {_listing(absent)}. `docker pull` them, or: {LOAD_HINT}")
        wanted = published if self.pull == "always" else absent
        pulled, failed = self._pull_each(wanted)
        new = [i for i in pulled if i in absent]
        self.pulled.extend(new)
        if failed:
            raise ImageSupplyError(f"cannot pull {len(failed)} task image(s): {_listing(failed)}. {LOAD_HINT}")
        if derived:
            from .evaluation.swesmith import build_instance_images

            build_instance_images(derived, client=self.client)
        return new

    def _build(self, rows: list[dict[str, Any]]) -> None:
        from .images import build_images

        missing = set(missing_images(self.client, [r["image"] for r in rows]))
        if missing:
            # build_images draws its own bar: not inside a given console's live display
            build_images([r["instance_id"] for r in rows if r["image"] in missing], client=self.client,
                         progress=self.progress is True)

    def _pull_each(self, images: list[str]) -> tuple[list[str], list[str]]:
        """(pulled, failures as "IMAGE (why)"). After a registry fails for any reason but a missing
        image, the rest of its images are not tried: offline, each try could cost a timeout."""
        import docker

        from .tasks import progress_bar

        pulled, failed, dead = [], [], {}
        console = None if isinstance(self.progress, bool) else self.progress
        with progress_bar(bool(self.progress) and bool(images), console) as bar:
            for image in images:
                registry = registry_of(image)
                if registry in dead:
                    failed.append(f"{image} (not tried: {registry} failed for {dead[registry]})")
                    continue
                try:
                    pull_image(self.client, image, bar)
                except docker.errors.APIError as e:
                    failed.append(f"{image} ({_reason(e)})")
                    if not isinstance(e, docker.errors.NotFound):
                        dead[registry] = image
                    continue
                pulled.append(image)
        return pulled, failed

    def release(self) -> list[str]:
        """End of the run: with ``prune``, remove the images this supply pulled (an image still used by a
        container stays). Returns what was removed; closes a client of its own."""
        try:
            if self.prune:
                self.pruned.extend(prune_images(self.client, [i for i in self.pulled if i not in self.pruned]))
        finally:
            if self._own and self._client is not None:
                self._client.close()
                self._client = None
        return self.pruned

    def summary(self) -> dict[str, list[str]]:
        return {"images_pulled": list(self.pulled), "images_pruned": list(self.pruned)}

    def __enter__(self) -> ImageSupply:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def prune_images(client: Any, images: list[str]) -> list[str]:
    """Remove these image references (never forced: a tag another reference shares is only untagged,
    an image a container still uses stays). Returns the ones removed."""
    import docker

    removed = []
    for image in images:
        try:
            client.images.remove(image)
        except docker.errors.ImageNotFound:
            continue
        except docker.errors.APIError as e:
            if e.status_code != 409:  # 409: a container uses it
                raise
            continue
        removed.append(image)
    return removed

