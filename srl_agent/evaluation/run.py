"""``run_eval``: produce predictions (a model in agent or oracle mode, the gold patches, or a given
file) for a dataset, then score them with the official harness.

Everything a run makes goes under ``output_dir``: ``predictions.jsonl``, ``trajs/<id>.traj`` (agent
mode), ``oracle/<id>.json`` (oracle mode: files shown, answer, edits that failed), ``dataset.jsonl``
(the rows scored), the harness's logs and report, and ``summary.json``.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from .data import BUNDLED, load_rows, select
from .harness import check_gradable, read_predictions, score, write_predictions

MODES = ("agent", "oracle")


def model_label(model: str | None) -> str:
    """What predictions name the model by: a hub id as given, a local folder by its name."""
    if model is None or str(model) == "tiny":
        return "tiny"
    path = Path(model)
    return path.resolve().name if path.exists() else str(model)


def policy_tokenizer(policy: Any) -> Any:
    """The tokenizer a local policy generates with (transformers: ``tokenizer``; vLLM: the engine's), else None."""
    tokenizer = getattr(policy, "tokenizer", None)
    if tokenizer is None and hasattr(getattr(policy, "llm", None), "get_tokenizer"):
        tokenizer = policy.llm.get_tokenizer()
    return tokenizer


def _agent_predictions(policy, rows, out: Path, label: str, agent_config, client, labels, progress,
                       exact_budgets: bool = False, runner: Any = None) -> list[dict]:
    from ..agent import Agent
    from ..steps import Truncator
    from .trajfile import write_traj

    truncate = None
    if exact_budgets:
        tokenizer = policy_tokenizer(policy)
        if tokenizer is None:
            raise ValueError(f"exact prompt budgets need the policy's tokenizer; {label!r} has none here "
                             "(use the transformers or vllm backend, or leave budgets in characters)")
        truncate = Truncator(tokenizer)
    agent = Agent(policy, agent_config, truncate=truncate)
    preds = []
    for ep in agent.run(rows, client=client, labels=labels, progress=progress, runner=runner):
        write_traj(out / "trajs" / f"{ep.instance_id}.traj", ep, model=label, config=agent.config,
                   issue_turn=agent.issue(ep.task), budgets="tokens" if exact_budgets else "characters")
        preds.append({"instance_id": ep.instance_id, "model_name_or_path": label, "model_patch": ep.submission,
                      "exit_status": ep.exit_status, "steps": len(ep.steps), "format_errors": len(ep.format_errors)})
    return preds


def _oracle_predictions(policy, rows, out: Path, label: str, agent_config, client, labels, progress,
                        exact_budgets: bool = False) -> list[dict]:
    from ..agent import AgentConfig
    from .oracle import answer_to_patch, oracle_files, oracle_messages, read_files

    cfg = agent_config or AgentConfig()
    files = [read_files(r, oracle_files(r.get("patch", "")), client=client, labels=labels) for r in rows]
    prompts = [oracle_messages(r.get("problem_statement", ""), f) for r, f in zip(rows, files, strict=True)]
    preds = []
    size = max(1, cfg.batch_size)
    for i in range(0, len(rows), size):
        answers = policy.generate(prompts[i : i + size], max_new_tokens=cfg.max_new_tokens,
                                  temperature=cfg.temperature, seed=cfg.seed)
        for row, shown, answer in zip(rows[i : i + size], files[i : i + size], answers, strict=True):
            result = answer_to_patch(shown, answer)
            record = {"instance_id": row["instance_id"], "files": list(shown), "answer": answer,
                      "edits": len(result.edits), "errors": result.errors, "patch": result.patch}
            (out / "oracle").mkdir(parents=True, exist_ok=True)
            (out / "oracle" / f"{row['instance_id']}.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
            preds.append({"instance_id": row["instance_id"], "model_name_or_path": label,
                          "model_patch": result.patch, "edits": len(result.edits), "edit_errors": len(result.errors)})
        if progress is not None:
            progress(len(preds), len(rows))
    return preds


def _flag_test_edits(rows: list[dict], preds: list[dict], strict: bool, client: Any, labels: Any) -> None:
    """``edited_test_files`` on every prediction; with ``strict`` those edits are taken out of its patch."""
    from ..engine.integrity import without_files
    from ..grading import test_infrastructure_edits

    by_id = {r["instance_id"]: r for r in rows}
    for p in preds:
        row, patch = by_id.get(p.get("instance_id")), p.get("model_patch") or ""
        if row is None:
            continue
        p["edited_test_files"] = test_infrastructure_edits(row, patch, client=client, labels=labels)
        if strict and p["edited_test_files"]:
            p["model_patch"] = without_files(patch, p["edited_test_files"])


def run_eval(
    model: str | None = None,
    dataset: str | Path | None = None,
    mode: str = "agent",
    output_dir: str | Path = "runs/eval",
    *,
    backend: str = "transformers",
    base_url: str | None = None,
    predictions: str | Path | None = None,
    gold: bool = False,
    instance_ids: list[str] | None = None,
    split: str = "test",
    agent_config: Any = None,
    exact_budgets: bool = False,
    policy: Any = None,
    do_score: bool = True,
    max_workers: int = 2,
    timeout: int = 1800,
    run_id: str | None = None,
    client: Any = None,
    labels: dict[str, str] | None = None,
    progress: Any = None,
    strict: bool = False,
    pull: str = "missing",
    prune_images: bool = False,
    eval_scripts_from: str | Path | None = None,
    image_progress: Any = False,
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Evaluate on ``dataset`` (default: the bundled tasks) and return the summary (also ``summary.json``).

    Predictions come from ``predictions`` (a file), ``gold`` (the rows' own patches) or the model
    (``policy``, or ``model`` + ``backend`` through ``make_policy``) in ``mode``. ``labels`` go on every
    sandbox container (tests use them to find their own). ``exact_budgets``: the agent's prompt budgets
    (``agent_config.prompt``) count the policy's own tokens, as ``srl-agent pipeline`` and RLVR prepare
    theirs, instead of characters / 4 (``prepare`` without ``--tokenizer``); agent mode, local policies.

    Every prediction's test-infrastructure edits (test files, ``conftest.py``, pytest configuration,
    ``.pth`` / ``sitecustomize.py``, plugin entry points: ``engine.integrity``) are listed in its summary
    entry as ``edited_test_files``; the harness grades the patch as given, unless ``strict``, which
    reverts those edits in the predictions before the harness sees them.

    Task images (``image_supply``): the ones the run needs are made present before any model work, as
    ``pull`` says (missing | never | always; the bundled tasks' are built); with ``prune_images`` the
    ones it pulled are removed at the end. ``eval_scripts_from``: a swebench-5 dataset that gives older
    rows their eval scripts (``data.load_rows``). ``image_progress``: a pull progress bar on stderr (True),
    or on this rich ``Console``.

    ``ray_address``: the agent's episodes and the harness run on that Ray cluster's nodes
    (``engine.cluster``; images are supplied here as without it, then shipped to the nodes that need
    them); the summary's ``ray`` says where they ran.
    """
    import docker

    from ..image_supply import ImageSupply

    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    if predictions is not None and gold:
        raise ValueError("give --predictions or --gold, not both")
    started = time.monotonic()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = select(load_rows(dataset, split, eval_scripts_from), instance_ids)
    if do_score:  # before any image is pulled or model loaded
        check_gradable(rows)
    bundled = dataset is None or Path(dataset).resolve() == BUNDLED
    run_id = run_id or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    source = "predictions" if predictions is not None else "gold" if gold else mode
    label = "gold" if gold else policy.name if policy is not None else model_label(model)
    own = client is None
    client = client or docker.from_env()
    supply = ImageSupply(client, pull=pull, prune=prune_images, progress=image_progress)
    runner = None
    try:
        if ray_address:
            from ..engine.cluster import ClusterRunner

            runner = ClusterRunner(ray_address, labels=labels)
        if predictions is not None:
            preds = read_predictions(Path(predictions))
            label = preds[0]["model_name_or_path"] if preds else label
        elif gold:
            preds = [{"instance_id": r["instance_id"], "model_name_or_path": "gold", "model_patch": r.get("patch", "")}
                     for r in rows]
        else:
            supply.ensure(rows, bundled)  # before any model work: a missing image stops the run here
            if policy is None:
                from ..policy import make_policy

                policy = make_policy(model, backend=backend, base_url=base_url)
            make = _agent_predictions if mode == "agent" else _oracle_predictions
            preds = make(policy, rows, out, label, agent_config, client, labels, progress, exact_budgets,
                         **({"runner": runner} if mode == "agent" else {}))
            write_predictions(preds, out / "predictions.jsonl")
        if do_score:  # the harness needs the images of the rows with a patch to apply
            patched = {p["instance_id"] for p in preds if p.get("model_patch")}
            supply.ensure([r for r in rows if r["instance_id"] in patched], bundled)
        _flag_test_edits(rows, preds, strict, client, labels)
        summary: dict[str, Any] = {"source": source, "mode": mode if source in MODES else None, "model": label,
                                   "dataset": str(dataset or BUNDLED), "output_dir": str(out), "strict": strict}
        if source in MODES:
            summary["predictions"] = str(out / "predictions.jsonl")
            summary["generation"] = {k: sum(p.get(k, 0) for p in preds) for k in
                                     (("steps", "format_errors") if mode == "agent" else ("edits", "edit_errors"))}
        if do_score:
            scorer = runner.score if runner is not None else lambda *a, **k: score(*a, **k, client=client)
            summary.update(scorer(rows, preds, out, run_id, max_workers=max_workers, timeout=timeout))
            made = {p["instance_id"]: p for p in preds}
            for i in summary["instances"]:  # how each prediction came about (exit status, steps, edits)
                i.update({k: v for k, v in made.get(i["instance_id"], {}).items() if k not in ("model_patch",
                          "model_name_or_path", "instance_id")})
        else:
            summary.update(total=len(rows), submitted=len(preds))
        if runner is not None:
            summary["ray"] = runner.summary()
    finally:
        if runner is not None:
            runner.close()
        supply.release()
        if own:
            client.close()
    summary.update(supply.summary())
    summary["seconds"] = round(time.monotonic() - started, 2)
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary
