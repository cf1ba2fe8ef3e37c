"""``srl-agent eval``: a thin wrapper over ``run_eval`` (registered in ``srl_agent/cli.py``).

The prompt settings (style, history, context steps, budgets) are the model's own, saved with it in
``srl-agent.json`` by training (``srl_agent.model_settings``); the prompt flags change only what they name.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..cli_util import (
    EVAL_SCRIPTS_FROM,
    INSTANCE_HELP,
    PRUNE_IMAGES,
    PULL,
    RAY,
    bad_input_exits,
    check_choice,
    emit,
    fail,
    instance_ids,
)

console = Console(stderr=True)


@bad_input_exits
def eval_command(
    model: str | None = typer.Option(None, "--model", help="Hub id or local path ('tiny' or none: the offline tiny model)."),
    dataset: str | None = typer.Option(None, "--dataset", help="swebench-5 rows file (.jsonl/.json) or hub name (default: the bundled tasks)."),
    mode: str = typer.Option("agent", "--mode", help="agent (tools in the task sandbox) | oracle (issue + gold files → SEARCH/REPLACE)."),
    output_dir: Path = typer.Option(Path("runs/eval"), "--output-dir", "-o", help="Where predictions, trajectories, logs and the summary go."),
    backend: str = typer.Option("transformers", "--backend", help="transformers | vllm | openai."),
    base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint (with --backend openai)."),
    predictions: Path | None = typer.Option(None, "--predictions", help="Score this predictions file; no model runs."),
    gold: bool = typer.Option(False, "--gold", help="Score the dataset's own gold patches."),
    instances: list[str] | None = typer.Option(None, "--instance", help=INSTANCE_HELP),
    old_instances: list[str] | None = typer.Option(None, "--instances", hidden=True),  # the older spelling
    split: str = typer.Option("test", "--split", help="Split of a hub dataset."),
    eval_scripts_from: str | None = EVAL_SCRIPTS_FROM,
    pull: str = PULL,
    prune_images: bool = PRUNE_IMAGES,
    ray_address: str | None = RAY,
    step_limit: int = typer.Option(30, "--step-limit", help="Most actions per agent episode."),
    format_error_limit: int = typer.Option(3, "--format-error-limit", help="Consecutive malformed completions that end an episode."),
    max_new_tokens: int = typer.Option(1024, "--max-new-tokens", help="Tokens per completion."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed of the first round (round r uses seed + r)."),
    style: str | None = typer.Option(None, "--style", help="Tool-call style the model writes: xml | json "
                                     "[default: as trained (the model's srl-agent.json), else xml]."),
    batch_size: int = typer.Option(4, "--batch-size", help="Episodes (or oracle prompts) per generate call."),
    context_steps: str | None = typer.Option(None, "--context-steps", help="Previous action–observation pairs in the "
                                             "prompt, or 'all' [default: as trained, else 2]."),
    history: str | None = typer.Option(None, "--history", help="window: SRL step prompts (last --context-steps pairs); "
                                       "episode: RLVR's chat of the whole episode [default: as trained, else window]."),
    observation_tokens: int | None = typer.Option(None, "--observation-tokens", help="Budget per observation in the "
                                                  "prompt [default: as trained, else 1024]."),
    issue_tokens: int | None = typer.Option(None, "--issue-tokens", help="Budget of the issue in the prompt "
                                            "[default: as trained, else 4096]."),
    exact_budgets: bool | None = typer.Option(None, "--exact-budgets/--character-budgets", help="Count the budgets in "
                                              "the model's own tokens (as `srl-agent pipeline` and `prepare "
                                              "--tokenizer` do), or in characters / 4 [default: as trained, else "
                                              "characters]."),
    max_workers: int = typer.Option(2, "--max-workers", help="Harness workers."),
    run_id: str | None = typer.Option(None, "--run-id", help="Harness run id (default: a timestamp). The same id in the same output dir resumes: graded instances are not rerun."),
    no_score: bool = typer.Option(False, "--no-score", help="Write predictions only."),
    strict: bool = typer.Option(False, "--strict", help="Revert each prediction's test-infrastructure edits (test files, "
                                "conftest.py, pytest configuration, .pth, plugin entry points) before the harness grades."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Run a model on SWE-bench-style tasks (or take given predictions) and score with the official harness."""
    from ..agent import HISTORIES, AgentConfig
    from ..model_settings import resolve
    from ..policy import BACKENDS
    from ..rewards.completion import STYLES
    from .harness import ScoringError
    from .run import MODES, run_eval

    for value, known, hint in ((mode, MODES, "--mode"), (backend, BACKENDS, "--backend"), (style, STYLES, "--style"),
                               (history, HISTORIES, "--history")):
        check_choice(hint, value, known)
    if context_steps is not None and context_steps != "all" and not context_steps.isdigit():
        fail(f"--context-steps: a number or 'all', got {context_steps!r}")
    if predictions is not None and not predictions.is_file():
        fail(f"--predictions: no such file: {predictions}")
    ids = instance_ids([*(instances or []), *(old_instances or [])])
    # A served model's name is not a hub id to read settings from; a local folder still is.
    saved_from = model if backend != "openai" or (model and Path(model).is_dir()) else None
    prompt = resolve(saved_from, style=style, history=history, observation_tokens=observation_tokens,
                     issue_tokens=issue_tokens, budgets=None if exact_budgets is None else
                     "tokens" if exact_budgets else "characters",
                     context_steps=context_steps if context_steps in (None, "all") else int(context_steps))
    config = AgentConfig(step_limit=step_limit, format_error_limit=format_error_limit, max_new_tokens=max_new_tokens,
                         temperature=temperature, seed=seed, style=prompt.style, batch_size=batch_size,
                         history=prompt.history, prompt=prompt.step_config())
    with console.status("evaluating", spinner="dots") if not as_json else _Quiet() as status:
        def progress(done: int, total: int) -> None:
            if status is not None:
                status.update(f"{mode}: {done}/{total} tasks")

        try:
            summary = run_eval(model, dataset, mode, output_dir, backend=backend, base_url=base_url,
                               predictions=predictions, gold=gold, instance_ids=ids, split=split,
                               agent_config=config, exact_budgets=prompt.exact_budgets, do_score=not no_score,
                               max_workers=max_workers, run_id=run_id, strict=strict,
                               progress=progress, pull=pull, prune_images=prune_images,
                               eval_scripts_from=eval_scripts_from, ray_address=ray_address,
                               image_progress=console if status is not None else False)  # nests under the spinner
        except (ScoringError, RuntimeError) as e:
            fail(str(e), code=1)
    if as_json:
        emit(summary, True)
        return
    table = Table(title=f"{summary['model']} ({summary['source']}) on {summary['dataset']}")
    for col in ("instance", "status", "FAIL_TO_PASS", "PASS_TO_PASS"):
        table.add_column(col)
    for i in summary.get("instances", []):
        color = "green" if i["resolved"] else "red" if i["status"] == "error" else "yellow"
        table.add_row(i["instance_id"], f"[{color}]{i['status']}[/{color}]", i.get("FAIL_TO_PASS", ""),
                      i.get("PASS_TO_PASS", ""))
    if summary.get("instances"):
        Console().print(table)
    if "resolved" in summary:
        Console().print(f"resolved {summary['resolved']}/{summary['total']} = {summary['resolve_rate']:.1%} "
                        f"(summary: {output_dir / 'summary.json'})")
    else:
        Console().print(f"{summary['submitted']} predictions in {summary.get('predictions')} (not scored)")


class _Quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
