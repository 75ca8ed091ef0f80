"""The ``cellscale`` command line: runs, the demo, ingest, projection, verification, summaries."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from cellscale._hints import as_flags

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cellscale`` command; returns the exit status.

    Errors in what the user asked for (a store that holds something else, a damaged
    plate, a bad file) print one line per problem on stderr and exit with status 1;
    ``--debug`` shows the traceback instead.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except _user_errors() as err:
        if args.debug:
            raise
        message = as_flags(str(err)) if args.command == "ingest" else str(err)
        print(f"cellscale {args.command}: error: {message}", file=sys.stderr)
        return 1


def _user_errors() -> tuple[type[Exception], ...]:
    """What a user's input or environment can cause: a bad path, file, option or store.

    Every cellscale error about what it was given (``PlateError``, ``StaleOutputError``,
    ``UnitFailure``, ``ConfigError`` …) derives from one of these.
    """
    from cellscale._stages import OutputLockedError, StaleOutputError, UnitFailure
    from cellscale.pipeline._config import ConfigError

    return (ValueError, OSError, StaleOutputError, UnitFailure, OutputLockedError, ConfigError)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cellscale", description="High-content screening at HPC scale."
    )
    parser.set_defaults(command=None)
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--version", action="version", version=f"cellscale {_version()}")
    commands = parser.add_subparsers(dest="command")

    run = commands.add_parser(
        "run", help="run a screen from a config file: plates to profiles and a report, resumably"
    )
    run.add_argument("config", type=Path, help="the run's YAML config")
    run.add_argument(
        "--overwrite", action="store_true", help="replace another run in the output folder"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.set_defaults(run=_run)

    train = commands.add_parser(
        "train",
        help="train a classifier on a screen's cells from a config file, evaluated on held-out "
        "wells and batches, resumably",
    )
    train.add_argument("config", type=Path, help="the training's YAML config")
    train.add_argument(
        "--overwrite", action="store_true", help="replace a training of other cells or settings"
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(run=_train)

    demo = commands.add_parser("demo", help="run the pipeline on a synthetic screen")
    demo.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder")
    demo.add_argument("--plates", type=int, default=2)
    demo.add_argument("--wells", type=int, default=8)
    demo.add_argument("--fields", type=int, default=2)
    demo.add_argument("--size", type=int, default=384, help="image height and width in pixels")
    demo.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes")
    demo.set_defaults(run=_demo)

    ingest = commands.add_parser(
        "ingest",
        help="turn a folder of TIFFs into an OME-Zarr plate",
        description="Turn a folder of TIFFs into an OME-Zarr HCS plate, resumably. Example: "
        "cellscale ingest ExampleFly/ fly.zarr --pattern 'POS(?P<field>\\d+)_(?P<c>[DFR])' "
        "--default well=A01 --channels D=DNA,F=PH3,R=Cy3",
    )
    ingest.add_argument("source", type=Path, help="the folder holding the images")
    ingest.add_argument("out", type=Path, help="the plate to write (*.zarr)")
    ingest.add_argument(
        "--pattern",
        default="imagexpress",
        help="a built-in name (imagexpress, imagexpress-projection, cellprofiler) or a regex "
        "with named groups among well (or row and col), field, c, z, t, plate",
    )
    ingest.add_argument(
        "--default",
        action="append",
        default=[],
        metavar="GROUP=VALUE",
        help="the value of a group the file names lack, e.g. well=A01 (repeatable)",
    )
    ingest.add_argument("--plate-map", type=Path, default=None, help="CSV/TSV with a well column")
    ingest.add_argument(
        "--well-column", default=None, help="the plate map's column of well names, if unusual"
    )
    ingest.add_argument(
        "--channels",
        default=None,
        help="channels to keep, in order, by id or name; id=name renames (d0=DNA,d1=PH3)",
    )
    ingest.add_argument("--name", default=None, help="the plate's name")
    ingest.add_argument(
        "--on-unmatched",
        choices=["raise", "warn", "ignore"],
        default="raise",
        help="what to do with image files the pattern does not match",
    )
    ingest.add_argument(
        "--fill-missing", action="store_true", help="fill missing images of present fields with 0"
    )
    ingest.add_argument(
        "--on-nonfinite",
        choices=["raise", "keep"],
        default="raise",
        help="what to do with floating-point images holding NaN or infinite pixels: name the "
        "file and stop, or keep them as they are (QC then flags them 'nonfinite')",
    )
    ingest.add_argument(
        "--project-z",
        choices=["max"],
        default=None,
        help="one plane per channel: max-project stacks, keep the instrument's projection or "
        "single plane where a channel has no stack (mixed-Z acquisitions keep every channel)",
    )
    ingest.add_argument(
        "--rgb", type=int, choices=[0, 1, 2], default=None, help="the sample of RGB files to take"
    )
    _write_options(ingest)
    ingest.set_defaults(run=_ingest)

    project = commands.add_parser("project", help="Z-project a plate into a new plate")
    project.add_argument("plate", type=Path)
    project.add_argument("out", type=Path)
    project.add_argument("--method", default="max", choices=["max", "mean", "middle", "best_focus"])
    project.add_argument(
        "--focus-channel",
        default=None,
        help="the channel (name or position) whose sharpest plane best_focus keeps",
    )
    _write_options(project)
    project.set_defaults(run=_project)

    verify = commands.add_parser(
        "verify",
        help="check every complete unit of an output (a plate with its labels, a cell table, "
        "embeddings, a model, a report) or of a whole run folder; repair what is damaged",
    )
    verify.add_argument("plate", type=Path, metavar="PATH")
    verify.add_argument(
        "--no-repair", action="store_true", help="report only; leave damaged units marked"
    )
    verify.add_argument(
        "--no-rerun",
        action="store_true",
        help="for a run folder: unmark damaged units but do not rerun the run to remake them",
    )
    verify.set_defaults(run=_verify)

    info = commands.add_parser("info", help="summarise a plate")
    info.add_argument("plate", type=Path)
    info.set_defaults(run=_info)

    models = commands.add_parser(
        "models",
        help="list the pretrained models on this machine; fetch one where there is internet",
        description="List the cellpose models and ImageNet weights cellscale can use, with "
        "where each file is or must be. Runs never download; --fetch does, with the model's "
        "own library's downloader.",
    )
    models.add_argument(
        "--fetch", metavar="NAME", default=None, help="download NAME (e.g. cpsam, resnet50)"
    )
    models.set_defaults(run=_models)
    return parser


def _write_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--overwrite", action="store_true", help="replace whatever the output holds"
    )
    command.add_argument(
        "--verify",
        action="store_true",
        help="check the output's complete units first and rewrite damaged ones",
    )
    command.add_argument(
        "--ngff-version", choices=["0.4", "0.5"], default=None, help="NGFF version of a new store"
    )
    command.add_argument(
        "--levels",
        type=int,
        default=None,
        help="pyramid levels, full resolution included (default: down to about 256 px)",
    )
    command.add_argument("--no-progress", action="store_true", help="no progress bar")


def _version() -> str:
    from cellscale import __version__

    return __version__


def _channels(text: str | None) -> list[str] | dict[str, str] | None:
    """``--channels``: ``a,b`` keeps channels in order; ``a=DNA,b=PH3`` also renames them."""
    if not text:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not any("=" in item for item in items):
        return items
    if not all("=" in item for item in items):
        raise ValueError(
            f"--channels {text!r}: rename every channel (id=name) or none (a list of ids)"
        )
    return dict(_pair(item, "--channels") for item in items)


def _pair(item: str, option: str) -> tuple[str, str]:
    key, _, value = item.partition("=")
    if not key.strip() or not value.strip():
        raise ValueError(f"{option} {item!r}: expected NAME=VALUE")
    return key.strip(), value.strip()


def _run(args: argparse.Namespace) -> int:
    """Run the screen; Ctrl-C stops it with one line and status 130 (``--debug``: traceback).

    Every finished unit is on disk, so the same command resumes the run.
    """
    from cellscale.pipeline import run

    return _resumable(
        args, lambda: run(args.config, overwrite=args.overwrite, progress=not args.no_progress)
    )


def _train(args: argparse.Namespace) -> int:
    """Train as the config says; Ctrl-C stops with one line (the epochs done are kept)."""
    from cellscale.learning._job import load_train_job, run_train_job

    job = load_train_job(args.config)
    return _resumable(
        args, lambda: run_train_job(job, progress=not args.no_progress, overwrite=args.overwrite)
    )


def _resumable(args: argparse.Namespace, work: Callable[[], object]) -> int:
    """Run ``work`` and print what it returns; Ctrl-C prints one line saying how to resume
    and gives status 130 (``--debug``: the traceback). Every finished unit is on disk."""
    try:
        made = work()
    except KeyboardInterrupt:
        if args.debug:
            raise
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: no traceback either
        print("\ninterrupted; rerun the same command to resume", file=sys.stderr, flush=True)
        return 130
    print(made)
    return 0


def _demo(args: argparse.Namespace) -> None:
    from cellscale.demo import DemoSettings, run_demo

    run_demo(
        DemoSettings(
            out=args.out,
            plates=args.plates,
            wells=args.wells,
            fields=args.fields,
            size=args.size,
            workers=args.workers,
        )
    )


def _ingest(args: argparse.Namespace) -> None:
    import cellscale
    from cellscale.io._patterns import resolve_pattern
    from cellscale.io._summary import plate_summary

    defaults = dict(_pair(item, "--default") for item in args.default)
    out = cellscale.ingest(
        args.source,
        args.out,
        pattern=resolve_pattern(args.pattern, defaults or None),
        plate_map=args.plate_map,
        well_column=args.well_column,
        channels=_channels(args.channels),
        fill_missing=args.fill_missing,
        on_unmatched=args.on_unmatched,
        rgb=args.rgb,
        name=args.name,
        project_z=args.project_z,
        on_nonfinite=args.on_nonfinite,
        version=args.ngff_version,
        levels=args.levels,
        overwrite=args.overwrite,
        verify=args.verify,
        progress=not args.no_progress,
    )
    print(plate_summary(out))


def _project(args: argparse.Namespace) -> None:
    import cellscale

    plate = cellscale.open_plate(args.plate)
    focus = _focus_channel(args.focus_channel)
    if focus is not None and args.method != "best_focus":
        raise ValueError("--focus-channel is for --method best_focus")
    projected = (
        cellscale.project(plate, "best_focus", focus_channel=focus)
        if args.method == "best_focus" and focus is not None
        else cellscale.project(plate, args.method)
    )
    cellscale.write_plate(
        projected,
        args.out,
        version=args.ngff_version,
        levels=args.levels,
        overwrite=args.overwrite,
        verify=args.verify,
        progress=not args.no_progress,
    )
    print(f"wrote the {args.method} projection of {args.plate} to {args.out}")


def _focus_channel(text: str | None) -> str | int | None:
    return int(text) if text is not None and text.isdigit() else text


def _verify(args: argparse.Namespace) -> int:
    import cellscale

    reports = cellscale.verify(
        args.plate, repair=not args.no_repair, rerun=not args.no_rerun, progress=False
    )
    for report in reports:
        print(report)
    return 0 if all(report.ok for report in reports) else 1


def _models(args: argparse.Namespace) -> None:
    from cellscale.model_files import fetch_model, local_models

    if args.fetch is not None:
        print(f"fetched: {fetch_model(args.fetch)}")
        return
    listed = local_models()
    print("\n".join(str(m) for m in listed) if listed else "no model libraries installed")


def _info(args: argparse.Namespace) -> None:
    from cellscale.io._summary import plate_summary

    print(plate_summary(args.plate))


if __name__ == "__main__":
    raise SystemExit(main())
