"""`holdguard audit`: audit hold recordings, and search the transcripts of stored audits.

    holdguard audit hold.wav                         # Markdown on a terminal, JSON into a pipe
    holdguard audit calls/ --out reports/            # one report per recording + index
    holdguard audit calls/ --ray                     # the batch on Ray (a local one, or --ray HOST:PORT)
    holdguard audit hold.wav --format html --out report.html
    holdguard audit search "upgrade"                 # full-text search over stored transcripts

`audit PATH...` and `audit search QUERY` share the command name: the first
argument picks. A known subcommand name ("search") runs it; anything else is a
path to audit. A recording literally named `search` is given as `./search`.
Whisper and the audio stack are imported only when a recording is audited.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

import click

from app.cli.options import db_option, existing_db, writable_db
from app.core.files import write_text_atomically
from app.storage import audits as store

# audits.transcribe.ENGINES, spelled out so `--help` does not import the speech stack (a test checks they agree)
ENGINES = ("openai-whisper", "faster-whisper")
DEFAULT_ENGINE = "faster-whisper"  # audits.transcribe.DEFAULT_ENGINE (tested to agree)
DEFAULT_MODEL = "base"  # audits.transcribe.DEFAULT_MODEL
REPORT_EXTENSIONS = {".json": "json", ".md": "md", ".html": "html", ".htm": "html"}
INDEX_STEM = "index"
_RUN_PATHS = "\0audit-paths"  # the hidden name the group gives its default command; no argv can spell it
_RAY_DEFAULT = "\0ray-default"  # --ray given without an address; no argv can spell it either


class _BareContext(click.Context):
    """The default command's context: its usage reads `holdguard audit [OPTIONS] PATH...`."""

    @property
    def command_path(self) -> str:
        return super().command_path.rstrip()


class PathsOrSubcommands(click.Group):
    """A group whose first argument is a subcommand name or else a path for its default command."""

    def __init__(self, *args, default_command: click.Command, **kwargs):
        super().__init__(*args, **kwargs)
        self.default_command = default_command

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [_RUN_PATHS, *args]
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx, args):
        if args and args[0] == _RUN_PATHS:
            return "", self.default_command, args[1:]
        return super().resolve_command(ctx, args)

    def format_usage(self, ctx, formatter):
        formatter.write_usage(ctx.command_path, "[OPTIONS] PATH...")
        formatter.write_usage(ctx.command_path, "search QUERY [--db FILE] [--limit N]", prefix="   or: ")

    def format_options(self, ctx, formatter):
        self.default_command.format_options(ctx, formatter)
        self.format_commands(ctx, formatter)


def decide_format(fmt: str | None, out: Path | None, stdout_is_terminal: bool) -> str:
    """--format if given, else by --out's extension, else json into a pipe or file and md on a terminal."""
    if fmt:
        return fmt
    if out is not None and out.suffix.lower() in REPORT_EXTENSIONS:
        return REPORT_EXTENSIONS[out.suffix.lower()]
    return "md" if stdout_is_terminal else "json"


def is_folder_target(out: str | Path) -> bool:
    """--out names a folder when it is one, ends with a slash (whatever the name: `out.v2/`) or has no
    file extension. Give it --out as typed: a Path has already dropped the trailing slash."""
    return str(out).endswith(("/", os.sep)) or Path(out).is_dir() or not Path(out).suffix


def collect_recordings(paths: list[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The audio files to audit (folders expanded) and (path, error) for paths that do not exist."""
    from audits.audio import find_audio_files

    files, missing = [], []
    for path in paths:
        if not path.exists():
            missing.append((str(path), f"{path}: no such file or folder"))
        elif path.is_dir():
            found = find_audio_files([path])
            files += found
            if not found:
                missing.append((str(path), f"{path}: folder holds no audio files"))
        else:
            files.append(path)  # any file: load() says clearly when it is not audio
    unique = list(dict.fromkeys(files))
    return unique, missing


def write_reports(results: list, failures: list, fmt: str, out: str | Path | None, batch: bool) -> list[Path]:
    """Print the report, or write it to --out (a file, or a folder: one per recording plus the index)."""
    from audits.report import EXTENSIONS, render

    if not results and not batch:
        return []  # the one recording failed: its error is on stderr, there is nothing to report
    if out is None:
        click.echo(render(results, fmt, batch=batch, failures=failures), nl=False)
        return []
    if not is_folder_target(out):
        _write_atomically(Path(out), render(results, fmt, batch=batch, failures=failures))
        return [Path(out)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written, used = [], set()
    for result in results:
        stem = Path(result.recording).stem
        name, number = stem, 1
        while name in used or name == INDEX_STEM:  # two hold.wav in different folders
            number += 1
            name = f"{stem}-{number}"
        used.add(name)
        written.append(_write_atomically(out / f"{name}{EXTENSIONS[fmt]}", render([result], fmt, batch=False)))
    written.append(_write_atomically(out / f"{INDEX_STEM}{EXTENSIONS[fmt]}",
                                     render(results, fmt, batch=True, failures=failures)))
    return written


def _write_atomically(path: Path, text: str) -> Path:
    """A report file, written atomically (a reader never sees half a report), its folder made."""

    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomically(path, text)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, metavar="PATH...", type=click.Path(path_type=Path))  # required: see _ray_option
@click.option("--context", "context_file", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Caller context JSON for every recording (default: <stem>.context.json beside each).")
@click.option("--format", "fmt", type=click.Choice(["json", "md", "html"]),
              help="Report format [default: from --out's extension, else md on a terminal, json otherwise].")
@click.option("--out", type=click.Path(), metavar="PATH",  # a str: its trailing slash means a folder
              help="Write the report here. A folder (existing, ending in /, or without extension) gets one "
                   "report per recording plus index.<format> with the batch summary.")
@click.option("--engine", type=click.Choice(ENGINES), default=DEFAULT_ENGINE, show_default=True,
              help="Speech engine (both run the same Whisper weights offline and hear the same text; "
                   "faster-whisper is about twice as fast).")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, metavar="NAME_OR_PATH",
              help="Whisper model name or a local checkpoint/model folder.")
@click.option("--jobs", "-j", type=click.IntRange(1), metavar="N",
              help="Recordings audited at once, each in its own process with its own model "
                   "[default: one per core, at most one per recording; 1 = all in this process]. "
                   "With --ray: the number of Ray workers [default: one per CPU of the cluster].")
@click.option("--ray", "ray_address", is_flag=False, flag_value=_RAY_DEFAULT, metavar="[ADDRESS]",
              help="Run the batch on Ray: a local Ray started for this run, or the cluster at ADDRESS "
                   "(host:port, ray://host:port, auto; default $RAY_ADDRESS when set). Every node needs "
                   "holdguard installed; recordings are sent to the workers, results stored here.")
@click.option("--library/--no-library", default=True, show_default=True,
              help="Match speech against the message library first, so only speech never heard before goes "
                   "to Whisper (and joins the library). --no-library hears every recording afresh and leaves "
                   "the library as it is.")
@db_option
def audit_paths(paths, context_file, fmt, out, engine, model, jobs, ray_address, library, db_path):
    """Audit hold recordings: what was played, how often, and what went wrong.

    PATH is an audio file (wav incl. 8 kHz mu-law, mp3, flac, ogg) or a folder of
    them. Every audit is stored in the database; re-auditing a file replaces it.
    A file that cannot be audited is reported on stderr and skipped; the exit
    status is then 1.

    \b
    Examples:
      holdguard audit sample_audio/hold-10min.wav --format html --out report.html
      holdguard audit calls/ --out reports/
      holdguard audit calls/ --out reports/ --ray head.internal:6379
      holdguard audit hold.wav --context caller.json --format json
    """
    from tqdm import tqdm

    paths, ray_address = _ray_option(list(paths), ray_address)
    if not paths:
        raise click.UsageError("Missing argument 'PATH...'.")
    fmt = decide_format(fmt, Path(out) if out else None, sys.stdout.isatty())
    if context_file is not None:
        _check_context_file(context_file)
    files, missing = collect_recordings(list(paths))
    for _, message in missing:
        click.echo(f"Error: {message}", err=True)
    failures = list(missing)
    db = writable_db(db_path)
    results = []
    if files:
        from audits.batch import audit_batch, default_jobs

        _check_engine(engine, model)
        with _runner(ray_address, jobs) as runner, \
                tqdm(total=len(files), unit="file", file=sys.stderr, disable=not sys.stderr.isatty(),
                     desc="audit") as progress:
            results, failed = audit_batch(files, db, engine=engine, model=model, context_file=context_file,
                                          jobs=min(jobs or default_jobs(len(files)), len(files)), progress=progress,
                                          runner=runner, library=library)
        failures += failed
    batch = len(files) + len(missing) > 1
    for path in write_reports(results, failures, fmt, out, batch):
        click.echo(f"wrote {path}", err=True)
    if failures:
        click.echo(f"{len(failures)} of {len(files) + len(missing)} recordings could not be audited", err=True)
        raise SystemExit(1)


def looks_like_ray_address(value: str) -> bool:
    """auto, local, host:port or ray://host:port, and not a file or folder that exists."""
    return (value in ("auto", "local") or re.fullmatch(r"(ray://)?[\w.\-\[\]:]+:\d+", value) is not None) \
        and not Path(value).exists()


def _ray_option(paths: list[Path], ray_address: str | None) -> tuple[list[Path], str | None]:
    """(paths, Ray address or None): `--ray hold.wav` gave --ray no address but the first recording,
    and a bare --ray means $RAY_ADDRESS when set, else a local Ray."""
    if ray_address is None:
        return paths, None
    if ray_address != _RAY_DEFAULT and not looks_like_ray_address(ray_address):
        paths, ray_address = [Path(ray_address), *paths], _RAY_DEFAULT
    if ray_address == _RAY_DEFAULT:
        ray_address = os.environ.get("RAY_ADDRESS") or "local"
    return paths, ray_address


@contextlib.contextmanager
def _runner(ray_address: str | None, jobs: int | None):
    """None without --ray (audit_batch's own processes); with it, Ray for this batch, stopped after."""
    if ray_address is None:
        yield None
        return
    from audits.ray_batch import RayRunner, RayUnavailable

    runner = RayRunner(ray_address, jobs)
    try:
        runner.start()
    except RayUnavailable as error:
        raise click.ClickException(str(error)) from None
    try:
        yield runner
    finally:
        runner.stop()


def _check_context_file(context_file: Path) -> None:
    from audits.context import ContextError, read_context_file

    try:
        read_context_file(context_file)
    except ContextError as error:
        raise click.ClickException(str(error)) from None


def _check_engine(engine: str, model: str) -> None:
    """Fail now, in one line, on a model that cannot be found (the one-off conversion happens here too);
    the model itself loads while the first recording is decoded (audits.batch.LoadingEngine)."""
    from audits.transcribe import prepare_model
    from audits.weights import ModelError

    try:
        prepare_model(engine, model)
    except ModelError as error:
        raise click.ClickException(str(error)) from None


audit_paths.context_class = _BareContext


@click.group("audit", cls=PathsOrSubcommands, default_command=audit_paths, no_args_is_help=True,
             context_settings={"help_option_names": ["-h", "--help"]})
def audit_group():
    """Audit hold recordings (PATH...), or search stored transcripts (search QUERY).

    PATH is an audio file or a folder of them; see the options below. A file
    named like a subcommand is given with its folder: ./search.

    \b
    Examples:
      holdguard audit sample_audio/hold-10min.wav --format html --out report.html
      holdguard audit calls/ --out reports/
      holdguard audit search "upgrade"
    """


@audit_group.command("search")
@click.argument("query")
@db_option
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1), help="At most this many matches.")
@click.option("--json", "as_json", is_flag=True, help="Print the matches as a JSON list.")
def search_command(query, db_path, limit, as_json):
    """Full-text search over the transcripts of stored audits.

    QUERY uses SQLite FTS syntax (words, "a phrase", OR, prefix*); words are
    stemmed, so "upgrade" also finds "upgrades".

    \b
    Example:
      holdguard audit search "galaxy upgrade"
    """
    import json

    from audits.rules import clock

    db = existing_db(db_path, "audit a recording first")
    if not store.has_audits(db):
        raise click.ClickException(f"{db_path}: no audits stored yet (run `holdguard audit PATH` first)")
    matches = store.search(db, query, limit)
    if as_json:
        click.echo(json.dumps(matches, indent=2, ensure_ascii=False))
        return
    if not matches:
        click.echo(f"no stored transcript matches {query!r}", err=True)
        return
    for match in matches:
        first_s = store.first_play_s(db, match["audit_id"], match["message_id"])
        first = f" first at {clock(first_s)}" if first_s is not None else ""
        click.echo(f"{match['recording']}  {match['message_id']}  {match['category']}  "
                   f"{match['plays']}×{first}  {match['text']}")
