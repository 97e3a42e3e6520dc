"""``devmig up``, ``devmig down`` and ``devmig tour``: a whole fleet on this machine, and a guided tour of it.

Exit codes:

====  ================================================================
up    0 stopped by Ctrl-C/SIGTERM (or, with ``--detach``, running in
      the background); 1 one already runs in the state directory, or
      a process of the fleet died; 2 the fleet could not start
down  0 stopped; 1 nothing running
tour  0 every step ✓; 1 some step ✗ (or interrupted, or the fleet
      could not start)
====  ================================================================
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from devmig._errors import DevmigError
from devmig._humanize import size
from devmig.cli._output import EXIT_NO, EXIT_OK, Output, exit_for

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from devmig.local import Check, StepResult

__all__ = ["register"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for programs.")]
StateDirOpt = Annotated[
    Path | None,
    typer.Option("--state-dir", help="Where the fleet keeps its state (default: $DEVMIG_HOME, else ./.devmig)."),
]
PlainOpt = Annotated[
    bool,
    typer.Option("--insecure-plain-tcp", help="Plain TCP instead of TLS (no local CA): for a trusted machine only."),
]
DETACH_TIMEOUT_S = 180.0
FINAL_PHASES = frozenset({"done", "rolled_back", "source_released", "released", "failed"})


def _state_dir(given: Path | None) -> Path:
    from devmig.local import default_state_dir

    return (given or default_state_dir()).resolve()


def _releases(releases: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(releases.items()))


def _announce(out: Output, state: dict[str, Any], *, detached: bool) -> None:
    if out.json_mode:
        sys.stdout.write(json.dumps({"event": "up", "detached": detached, **state}) + "\n")
        sys.stdout.flush()
        return
    c = out.console
    c.print(f"[bold]devmig local fleet[/] up — state in {escape(state['state_dir'])}")
    m = state["manager"]
    c.print(f"  {'manager':<16} {m['url']:<24} pid {m['pid']:<7} inventory {escape(m['db'])}")
    for a in state["agents"]:
        c.print(f"  {'agent ' + a['name']:<16} {a['url']:<24} pid {a['pid']:<7} {_releases(a['releases'])}")
    c.print(f"pool [bold]{state['pool']}[/]: {', '.join(a['name'] for a in state['agents'])}; "
            f"{len(state['devices'])} devices running")
    c.print(f"token (manager and agents): {state['token']}")
    tls = state.get("tls")
    if tls:
        c.print(f"TLS: local CA {escape(tls['ca'])}; the agents require a client certificate. For the CLI:")
        c.print(f"  export DEVMIG_TLS_CA={tls['ca']} DEVMIG_TLS_CERT={tls['cert']} DEVMIG_TLS_KEY={tls['key']}")
    else:
        c.print("[yellow]plain TCP[/] (--insecure-plain-tcp): tokens and device state cross in clear")
    c.print(f"try:  DEVMIG_MANAGER={m['url']} devmig hosts list")
    if detached:
        c.print(f"running in the background (leader pid {state['leader']['pid']}); stop it with "
                f"`devmig down{_dir_flag(state)}`")
    else:
        c.print("Ctrl-C stops everything.")


def _dir_flag(state: dict[str, Any]) -> str:
    from devmig.local import default_state_dir

    return "" if Path(state["state_dir"]) == default_state_dir().resolve() else f" --state-dir {state['state_dir']}"


def _fail(out: Output, exc: DevmigError) -> None:
    out.fail(exc, exit_for(exc))


# -- devmig up -------------------------------------------------------------------------------


def up_cmd(
    state_dir: StateDirOpt = None,
    detach: Annotated[bool, typer.Option("--detach", help="Run in the background; return once it is up.")] = False,
    insecure_plain_tcp: PlainOpt = False,
    json_mode: JsonOpt = False,
) -> None:
    """Start a local fleet: a manager (SQLite) and four agents on loopback, in pool `local`, with devices running.

    One agent runs the oldest releases of the reference devices, two the
    current ones, one the newest. Every API and stream runs on TLS with a
    local CA made in the state directory (the agents require client
    certificates), unless --insecure-plain-tcp. Stays in the foreground until Ctrl-C or
    SIGTERM, then stops every process. Writes state.json (pids, URLs, token)
    in the state directory for `devmig down` and other tools.

    Exit 0 when stopped (or detached and up), 1 when one already runs there or
    a process died, 2 when it could not start.
    """
    from devmig.local import LocalFleet, signals_raise

    out = Output(json_mode)
    directory = _state_dir(state_dir)
    if detach:
        _detach(out, directory, insecure_plain_tcp)
        return
    fleet = LocalFleet(directory, tls=not insecure_plain_tcp)
    code = EXIT_OK
    try:
        with signals_raise():
            try:
                state = fleet.start(on_event=None if json_mode else (lambda s: out.err.print(f"[dim]{s}…[/]")))
                _announce(out, state, detached=False)
                while True:
                    time.sleep(0.2)
                    gone = fleet.exited()
                    if gone:
                        for child in gone:
                            out.err.print(f"[red]{child.kind} {child.name} exited with status "
                                          f"{child.process.returncode}[/]; see {child.log_path}")
                        code = EXIT_NO
                        break
            except KeyboardInterrupt:
                pass
            finally:
                if not json_mode:
                    out.err.print("[dim]stopping the fleet…[/]")
                fleet.stop()
    except DevmigError as exc:
        _fail(out, exc)
    if json_mode:
        sys.stdout.write(json.dumps({"event": "down", "state_dir": str(directory)}) + "\n")
    else:
        out.console.print("stopped: every process of the fleet has exited")
    raise typer.Exit(code)


def _detach(out: Output, directory: Path, plain: bool) -> None:
    """Start a leader in its own session (``devmig up --json`` logging to ``DIR/leader.log``); wait until it is up."""
    from devmig.local import fleet_error, leader_alive, read_state

    if leader_alive(directory):
        state = None
        with contextlib.suppress(DevmigError):
            state = read_state(directory)
        where = f" (manager {state['manager']['url']})" if state else ""
        _fail(out, fleet_error("FLEET_RUNNING", f"a local fleet already runs in {directory}{where}",
                               value=str(directory), hint="stop it with `devmig down`, or pick another --state-dir"))
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "leader.log"
    with log.open("wb") as sink:
        leader = subprocess.Popen(
            [sys.executable, "-m", "devmig", "up", "--state-dir", str(directory), "--json",
             *(["--insecure-plain-tcp"] if plain else [])],
            stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
        )
    deadline = time.monotonic() + DETACH_TIMEOUT_S
    while True:
        state = None
        with contextlib.suppress(DevmigError):
            state = read_state(directory)
        if state is not None and state.get("leader", {}).get("pid") == leader.pid:
            break
        if leader.poll() is not None:
            text = log.read_text(errors="replace")
            running = "FLEET_RUNNING" in text
            error = fleet_error("FLEET_RUNNING" if running else "FLEET_START_FAILED",
                                f"the background leader exited with status {leader.returncode}: "
                                + "\n".join(text.strip().splitlines()[-8:]), value=str(log))
            _fail(out, error)
        if time.monotonic() > deadline:
            leader.terminate()
            _fail(out, fleet_error("FLEET_START_FAILED", f"the fleet did not come up in {DETACH_TIMEOUT_S:.0f} s",
                                   value=str(log), hint=f"see {log}"))
        time.sleep(0.1)
    leader.returncode = 0  # it lives on in its own session; do not warn that it still runs
    _announce(out, state, detached=True)


# -- devmig down -----------------------------------------------------------------------------


def down_cmd(state_dir: StateDirOpt = None, json_mode: JsonOpt = False) -> None:
    """Stop the local fleet running in the state directory (its leader and every process it started).

    Exit 0 when stopped, 1 when nothing runs there (a stale state.json is removed).
    """
    from devmig.local import stop_running

    out = Output(json_mode)
    try:
        result = stop_running(_state_dir(state_dir))
    except DevmigError as exc:
        _fail(out, exc)
    if json_mode:
        out.json(result)
    else:
        out.console.print(f"stopped the local fleet in {escape(result['state_dir'])} (leader pid {result['leader']}"
                          + (", killed" if result["forced"] else "") + ")")


# -- devmig tour -----------------------------------------------------------------------------


class ConsoleNarrator:
    """Tells the tour on a console: rich (rules, tables, a progress bar) on a terminal, plain lines otherwise."""

    def __init__(self) -> None:
        self.rich = sys.stdout.isatty()
        self.console = Console(highlight=False, soft_wrap=not self.rich)
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last: tuple[str, str] | None = None

    def line(self, text: str) -> None:
        """One plain line (markup escaped)."""
        if self.rich:
            self.console.print(escape(text))
        else:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def note(self, text: str) -> None:
        """Set-up and tear-down news."""
        if self.rich:
            self.console.print(f"[dim]{escape(text)}[/]")
        else:
            self.line(text)

    def begin(self, index: int, total: int, title: str) -> None:
        """A step starts."""
        if self.rich:
            self.console.rule(f"[bold]{index}/{total}  {escape(title)}", align="left")
        else:
            self.line(f"== {index}/{total} {title}")

    def say(self, text: str) -> None:
        """A line of narration."""
        self._stop_progress()
        self.line("  " + text)

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """A table (aligned columns when plain)."""
        self._stop_progress()
        if self.rich:
            table = Table(pad_edge=False)
            for col in columns:
                table.add_column(col)
            for row in rows:
                table.add_row(*(escape(cell) for cell in row))
            self.console.print(table)
            return
        widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
        for row in [list(columns), *rows]:
            self.line("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())

    def progress(self, label: str, phase: str, done: int, total: int | None) -> None:
        """A migration's progress: a live bar on a terminal (full once done); a line per phase otherwise."""
        sent = f"{size(done)} sent"
        if not self.rich:
            if self._last != (label, phase):
                self._last = (label, phase)
                self.line(f"  … {label}: {phase}, {sent}")
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        if self._progress is None or self._last is None or self._last[0] != label:
            self._stop_progress()
            self._progress = Progress(
                TextColumn("  {task.description}"),
                BarColumn(),
                TextColumn("{task.fields[sent]}"),
                TextColumn("[cyan]{task.fields[phase]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._progress.start()
            self._task = self._progress.add_task(escape(label), total=None, sent=sent, phase=phase)
        assert self._task is not None
        if phase in FINAL_PHASES:  # the bytes on the wire are not the memory's size: full bar once done
            self._progress.update(self._task, total=1, completed=1, sent=sent, phase=phase)
        else:
            self._progress.update(self._task, sent=sent, phase=phase)
        self._last = (label, phase)

    def _stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None
        if self.rich:
            self._last = None

    def check(self, check: Check) -> None:
        """A self-check: ✓ or ✗, what, and the evidence."""
        self._stop_progress()
        mark = "✓" if check.ok else "✗"
        detail = f" — {check.detail}" if check.detail else ""
        if self.rich:
            colour = "green" if check.ok else "red"
            self.console.print(f"  [{colour}]{mark}[/] {escape(check.what)}[dim]{escape(detail)}[/]")
        else:
            self.line(f"  {mark} {check.what}{detail}")

    def end(self, result: StepResult) -> None:
        """A step ended."""
        self._stop_progress()
        mark = "✓" if result.ok else "✗"
        if self.rich:
            colour = "green" if result.ok else "red"
            self.console.print(f"[{colour}]{mark}[/] [bold]{escape(result.title)}[/] [dim]({result.seconds:.2f} s)[/]")
        else:
            self.line(f"{mark} {result.title} ({result.seconds:.2f} s)")


def _ports_free(state: dict[str, Any]) -> tuple[bool, list[str]]:
    """Whether every port the fleet listened on can be bound again."""
    addresses = [state["manager"]["url"]] + [a["url"] for a in state["agents"]] + [
        a["stream"] for a in state["agents"] if a.get("stream")]
    busy = []
    for address in addresses:
        hostport = address.rpartition("//")[2]
        host, _, port = hostport.rpartition(":")
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "bound"; a listener is
            try:
                sock.bind((host.strip("[]"), int(port)))
            except OSError:
                busy.append(hostport)
    return not busy, busy


def tour_cmd(
    json_mode: JsonOpt = False,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="Where the tour's fleet lives (default: a temporary directory).")
    ] = None,
    insecure_plain_tcp: PlainOpt = False,
) -> None:
    """A guided tour: start a local fleet, run a real scenario against it step by step, tear it down.

    Each step is a real call followed by a self-check (✓/✗): what each host
    reports; a placement with rejected hosts; the pool baseline; an upgrade
    and a rollback migration with equal digests and the workload running on;
    a migration refused before anything moved; a drain; a summary. The fleet
    is always stopped, also on Ctrl-C or failure.

    Exit 0 only if every step is ✓; otherwise 1.
    """
    from devmig.local import LocalFleet, SilentNarrator, pid_alive, run_tour, signals_raise

    out = Output(json_mode)
    narrator = ConsoleNarrator()
    temporary = state_dir is None
    directory = Path(tempfile.mkdtemp(prefix="devmig-tour-")) if state_dir is None else state_dir.resolve()
    fleet = LocalFleet(directory, tls=not insecure_plain_tcp)
    report: dict[str, Any] = {"ok": False, "state_dir": str(directory)}
    state: dict[str, Any] | None = None
    ok = False
    try:
        with signals_raise():
            try:
                if not json_mode:
                    narrator.note(f"starting a local fleet in {directory} (set-up, not timed)…")
                set_up = time.monotonic()
                state = fleet.start(on_event=None if json_mode else narrator.note)
                report["setup_seconds"] = round(time.monotonic() - set_up, 3)
                if not json_mode:
                    narrator.note(f"up in {report['setup_seconds']:.1f} s, pool {state['pool']}:")
                    narrator.note(f"  manager    {state['manager']['url']}  pid {state['manager']['pid']}")
                    for a in state["agents"]:
                        narrator.note(f"  {a['name']:<10} {a['url']}  pid {a['pid']}  {_releases(a['releases'])}"
                                      f"  (streams {a['stream']})")
                result = run_tour(state, SilentNarrator() if json_mode else narrator)
                report.update(result.to_dict())
                ok = result.ok
            except KeyboardInterrupt:
                report["interrupted"] = True
                if not json_mode:
                    narrator.line("✗ interrupted")
            except DevmigError as exc:
                report["errors"] = exc.to_dicts()
                if not json_mode:
                    out.problems(exc.problems, title="the fleet could not start")
            finally:
                stopping = time.monotonic()
                fleet.stop()
                report["teardown_seconds"] = round(time.monotonic() - stopping, 3)
    finally:
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)
    if state is not None:
        pids = [state["manager"]["pid"]] + [a["pid"] for a in state["agents"]]
        alive = [p for p in pids if pid_alive(p)]
        free, busy = _ports_free(state)
        report["teardown"] = {"pids": pids, "alive": alive, "ports_busy": busy}
        clean = not alive and free
        ok = ok and clean
        if not json_mode:
            narrator.line(
                f"{'✓' if clean else '✗'} torn down in {report['teardown_seconds']:.1f} s: "
                f"{len(pids) - len(alive)} of {len(pids)} processes "
                f"exited (pids {', '.join(map(str, pids))}), "
                + ("every port free" if free else f"ports still bound: {', '.join(busy)}")
            )
    report["ok"] = ok
    if json_mode:
        out.json(report)
    elif ok:
        narrator.line("✓ tour passed: every step ✓")
    else:
        narrator.line("✗ tour failed: some step is ✗")
    raise typer.Exit(EXIT_OK if ok else EXIT_NO)


def register(app: typer.Typer) -> None:
    """Add ``up``, ``down`` and ``tour`` to ``app``."""
    app.command("up")(up_cmd)
    app.command("down")(down_cmd)
    app.command("tour")(tour_cmd)
