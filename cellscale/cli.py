"""The ``cellscale`` command line: runs, the demo, ingest, projection, verification, summaries."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

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
        print(f"cellscale {args.command}: error: {err}", file=sys.stderr)
        return 1


def _user_errors() -> tuple[type[Exception], ...]:
    from cellscale._stages import OutputLockedError, StaleOutputError, UnitFailure
    from cellscale.pipeline._config import ConfigError
    from cellscale.plate import PlateError

    return (
        PlateError,
        StaleOutputError,
        UnitFailure,
        OutputLockedError,
        FileNotFoundError,
        ConfigError,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cellscale", description="High-content screening at HPC scale."
    )
    parser.set_defaults(command=None)
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
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

    demo = commands.add_parser("demo", help="run the pipeline on a synthetic screen")
    demo.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder")
    demo.add_argument("--plates", type=int, default=2)
    demo.add_argument("--wells", type=int, default=8)
    demo.add_argument("--fields", type=int, default=2)
    demo.add_argument("--size", type=int, default=384, help="image height and width in pixels")
    demo.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes")
    demo.set_defaults(run=_demo)

    ingest = commands.add_parser("ingest", help="turn a folder of TIFFs into an OME-Zarr plate")
    ingest.add_argument("source", type=Path)
    ingest.add_argument("out", type=Path)
    ingest.add_argument("--pattern", default="imagexpress", help="built-in name or a regex")
    ingest.add_argument("--plate-map", type=Path, default=None, help="CSV with a well column")
    ingest.add_argument("--channels", default=None, help="comma-separated channel ids or names")
    ingest.add_argument("--fill-missing", action="store_true", help="fill missing images with 0")
    ingest.add_argument("--version", choices=["0.4", "0.5"], default=None, help="NGFF version")
    _write_options(ingest)
    ingest.set_defaults(run=_ingest)

    project = commands.add_parser("project", help="Z-project a plate into a new plate")
    project.add_argument("plate", type=Path)
    project.add_argument("out", type=Path)
    project.add_argument("--method", default="max", choices=["max", "mean", "middle", "best_focus"])
    _write_options(project)
    project.set_defaults(run=_project)

    verify = commands.add_parser(
        "verify", help="check that every complete unit of a plate has all its chunks, intact"
    )
    verify.add_argument("plate", type=Path)
    verify.add_argument(
        "--no-repair", action="store_true", help="report only; leave damaged units marked"
    )
    verify.set_defaults(run=_verify)

    info = commands.add_parser("info", help="summarise a plate")
    info.add_argument("plate", type=Path)
    info.set_defaults(run=_info)
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


def _run(args: argparse.Namespace) -> None:
    from cellscale.demo import _quiet_cluster_logs
    from cellscale.pipeline import run

    _quiet_cluster_logs()
    print(run(args.config, overwrite=args.overwrite, progress=not args.no_progress))


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

    channels = args.channels.split(",") if args.channels else None
    out = cellscale.ingest(
        args.source,
        args.out,
        pattern=args.pattern,
        plate_map=args.plate_map,
        channels=channels,
        fill_missing=args.fill_missing,
        version=args.version,
        overwrite=args.overwrite,
        verify=args.verify,
    )
    print(cellscale.open_plate(out))


def _project(args: argparse.Namespace) -> None:
    import cellscale

    plate = cellscale.open_plate(args.plate)
    projected = cellscale.project(plate, args.method)
    cellscale.write_plate(projected, args.out, overwrite=args.overwrite, verify=args.verify)
    print(f"wrote the {args.method} projection of {args.plate} to {args.out}")


def _verify(args: argparse.Namespace) -> int:
    import cellscale

    report = cellscale.verify_plate(args.plate, repair=not args.no_repair)
    print(report)
    return 0 if report.ok else 1


def _info(args: argparse.Namespace) -> None:
    import cellscale

    print(cellscale.open_plate(args.plate))


if __name__ == "__main__":
    raise SystemExit(main())
