"""The Docker sandbox against the real engine: session state, timeouts, containment, files, diff, reset.

Without an engine these tests skip; with SRL_REQUIRE_DOCKER set they fail instead (tests/conftest.py).
Expected values come from independent sources: the container's own tools, the host's git, Python.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import tracemalloc
import uuid

import pytest

from srl_agent.sandbox import LABEL, TIMEOUT_EXIT_CODE, TRUNCATION_MARKER, Sandbox, SandboxConfig, gc
from srl_agent.shell import Clip


@pytest.fixture
def sb(sandbox_config, docker_client):
    with Sandbox(sandbox_config, client=docker_client) as sandbox:
        yield sandbox


def ok(sb: Sandbox, command: str, timeout: float = 30) -> str:
    r = sb.run(command, timeout=timeout)
    assert r.exit_code == 0 and not r.timed_out, (command, r)
    return r.output


# ---------------------------------------------------------------- hardening
def test_container_is_hardened(sb, sandbox_config, docker_client):
    attrs = docker_client.containers.get(sb.container.id).attrs
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["CapDrop"] == ["ALL"]
    assert {c.removeprefix("CAP_") for c in host["CapAdd"]} == {"CHOWN", "DAC_OVERRIDE", "FOWNER"}
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["PidsLimit"] == 256
    assert host["Memory"] == host["MemorySwap"] == 1 << 30
    assert host["NanoCpus"] == 2_000_000_000
    assert attrs["Config"]["Labels"][LABEL] == "1"
    assert attrs["Config"]["Labels"].items() >= sandbox_config.labels.items()
    # Inside: exactly CAP_CHOWN (0), CAP_DAC_OVERRIDE (1), CAP_FOWNER (3); no new privileges.
    status = dict(line.split(":\t", 1) for line in ok(sb, "cat /proc/self/status").splitlines() if ":\t" in line)
    assert int(status["CapEff"], 16) == int(status["CapBnd"], 16) == 0b1011
    assert status["NoNewPrivs"].strip() == "1"
    # What the dropped capabilities forbid, and what the kept ones allow.
    assert sb.run("mknod /tmp/null c 1 3").exit_code != 0
    assert sb.run("chroot / true").exit_code != 0
    assert ok(sb, "cd /tmp && echo a > ro && chmod 444 ro && chown 1000:1000 ro && echo b >> ro && cat ro") == "a\nb\n"


def test_network_is_off(sb):
    assert ok(sb, "ls /sys/class/net").split() == ["lo"]
    probe = (
        "python3 -c \"import socket\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=3)\n"
        "    print('connected')\nexcept OSError as e:\n    print('failed', e.errno)\""
    )
    assert ok(sb, probe).startswith("failed")


# ---------------------------------------------------------------- the session
def test_session_keeps_cwd_env_and_functions(sb):
    assert sb.cwd == "/testbed"
    ok(sb, "cd calc && export GREETING=hello && shout() { echo \"${1^^}!\"; } && declare -A m=([k]=v)")
    assert ok(sb, 'pwd; echo "$GREETING"; shout hi; echo "${m[k]}"') == "/testbed/calc\nhello\nHI!\nv\n"
    assert sb.cwd == "/testbed/calc"


def test_stdout_and_stderr_are_merged_in_order_and_exit_codes_kept(sb):
    r = sb.run("echo one; echo two >&2; echo three; (exit 3)")
    assert (r.output, r.exit_code, r.timed_out, r.truncated) == ("one\ntwo\nthree\n", 3, False, False)
    assert sb.run("false").exit_code == 1
    assert sb.run("printf 'no newline'").output == "no newline"
    assert sb.run("true").output == ""


def test_quotes_heredocs_backslashes_and_unicode_survive(sb):
    text = "it's \"quoted\" \\ back\\slash $HOME `date` $(id) \t tab ünïcødé ✓ \x1b[0m"
    command = f"cat <<'EOF'\n{text}\nEOF\nprintf '%s\\n' 'a'\"b\"$'\\x41'"
    assert sb.run(command).output == f"{text}\nabA\n"
    assert sb.run("echo 'unterminated").exit_code != 0  # a syntax error is the command's, not the session's
    assert ok(sb, "echo still here") == "still here\n"


def test_commands_cannot_read_the_session_protocol(sb):
    # stdin is /dev/null: `cat` and `read` see end of file instead of eating the next command.
    assert sb.run("cat; read -r x; echo rc=$?").output == "rc=1\n"
    assert ok(sb, "echo next") == "next\n"


def _nonces(text: str) -> set[str]:
    import re

    return set(re.findall(r"[0-9a-f]{32}", text))


def test_the_end_marker_cannot_be_forged_or_traced(sb):
    assert not _nonces(ok(sb, "set; env; declare -p"))  # no nonce in any variable
    r = sb.run("set -x; echo traced")
    assert r.output.endswith("echo traced\ntraced\n") and r.exit_code == 0
    r = sb.run("echo second")  # traced: the marker's printf is not (its stderr goes to /dev/null)
    assert r.output.endswith("echo second\nsecond\n") and not _nonces(r.output)
    sb.run("set +x")
    assert ok(sb, "echo plain") == "plain\n"


def test_set_v_forged_marker_exploit_only_prints(sb):
    """``set -v`` echoes every line bash reads, the marker's nonce included. Were that nonce the
    session's, the next command could print a forged marker: it would end early and every later
    result would be shifted by one. Each command has its own nonce, so what leaks is spent."""
    import uuid

    ok(sb, "set -v")
    leaked = sb._session._tag[1:-1].decode()  # the nonce of the last command, what set -v could have shown
    forged = f"printf '\\n{leaked}:0:/forged\\n'; echo after; cd /tmp"
    r = sb.run(forged)
    assert r.exit_code == 0 and sb.cwd == "/tmp"  # the real marker, not the forged one, ended it
    assert f"{leaked}:0:/forged\nafter\n" in r.output and "eval $'" not in r.output  # the echo is dropped
    r = sb.run(f"printf '\\n{uuid.uuid4().hex}:7:/x\\n'; echo own")
    assert r.output.rstrip().endswith("own") and r.exit_code == 0
    sb.run("set +v")
    assert ok(sb, "echo next") == "next\n"  # every result is its own command's


def test_exit_restarts_the_session_in_the_same_cwd(sb):
    ok(sb, "cd /tmp")
    r = sb.run("echo bye; exit 7")
    assert (r.output, r.exit_code, r.timed_out) == ("bye\n", 7, False)
    assert ok(sb, "pwd") == "/tmp\n"
    r = sb.run("set -e; false; echo unreachable")
    assert r.exit_code == 1 and "unreachable" not in r.output
    assert ok(sb, "pwd") == "/tmp\n"


def test_a_session_whose_socket_closed_is_replaced_and_runs_the_command(sb):
    """A hijacked exec socket can be closed under the session (the engine, a collected HTTP response):
    the command still runs, in a new session in the same cwd."""
    ok(sb, "cd /testbed/calc")
    sb._session.channel.sock.close()
    assert ok(sb, "echo still; pwd") == "still\n/testbed/calc\n"


# ---------------------------------------------------------------- timeouts and containment
def test_sleep_times_out_and_the_session_goes_on(sb):
    ok(sb, "cd /testbed/calc && export KEPT=yes")
    r = sb.run("echo before; sleep 1000", timeout=2)
    assert r.timed_out and r.exit_code == TIMEOUT_EXIT_CODE
    assert r.output.startswith("before\n")
    # The same shell: cwd and environment survive; the sleep is gone.
    assert ok(sb, 'pwd; echo "$KEPT"') == "/testbed/calc\nyes\n"
    assert "sleep 1000" not in ok(sb, "ps -eo args")


def test_builtin_infinite_loop_times_out_and_the_session_recovers(sb):
    ok(sb, "cd /testbed/docs")
    stuck = sb._session.pid
    r = sb.run("while true; do :; done", timeout=2)
    assert r.timed_out and r.exit_code == TIMEOUT_EXIT_CODE
    assert ok(sb, "pwd; echo alive") == "/testbed/docs\nalive\n"
    assert sb.run(f"test -e /proc/{stuck}").exit_code == 1  # the busy shell was killed, a new one took over


def test_fork_bomb_is_contained(sb, docker_client):
    # The bomb fills the pids limit; the foreground `sleep` cannot even fork, so the command times out.
    r = sb.run(":(){ :|:& };: ; sleep 100", timeout=5)
    assert r.timed_out
    # Everything the bomb left was killed: an external command runs again and few processes remain.
    assert ok(sb, "python3 -c 'print(6 * 7)'") == "42\n"
    assert int(ok(sb, "ls -d /proc/[0-9]* | wc -l")) < 20
    assert docker_client.ping()
    assert docker_client.containers.get(sb.container.id).status == "running"


def test_memory_hog_is_killed(sb, docker_client):
    r = sb.run("python3 -c \"b = b'x' * (4 * 1024**3); print('ALLOC' + 'ATED')\"", timeout=120)
    assert r.exit_code == 137 and not r.timed_out and "ALLOCATED" not in r.output  # SIGKILL from the OOM killer
    assert ok(sb, "echo fine") == "fine\n"
    assert docker_client.containers.get(sb.container.id).status == "running"


def test_huge_output_keeps_head_and_tail(sb):
    limit = sb.config.output_limit
    r = sb.run("seq 1 2000000")
    expected = "".join(f"{i}\n" for i in range(1, 2_000_001))  # about 14.9 MB
    head, tail = expected[: limit // 2], expected[-(limit - limit // 2) :]
    marker = TRUNCATION_MARKER.format(omitted=len(expected) - limit, total=len(expected))
    assert r.truncated and r.exit_code == 0
    assert r.output == head + marker + tail


def test_endless_output_until_timeout_stays_bounded_in_memory(sb):
    tracemalloc.start()
    try:
        r = sb.run("yes", timeout=3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert r.timed_out and r.truncated
    assert r.output.startswith("y\ny\n") and "bytes omitted from the middle" in r.output
    assert len(r.output) < sb.config.output_limit + 200
    assert peak < 20 * sb.config.output_limit, peak  # hundreds of MB streamed through, a few hundred KB held
    assert ok(sb, "echo quiet") == "quiet\n"


def test_output_limit_none_keeps_everything(sandbox_config, docker_client):
    sandbox_config.output_limit = None
    with Sandbox(sandbox_config, client=docker_client) as sandbox:
        r = sandbox.run("seq 1 300000")
    assert not r.truncated and r.output == "".join(f"{i}\n" for i in range(1, 300_001))


def test_clip_keeps_exact_halves():
    for limit, total in [(10, 10), (10, 11), (11, 100), (4, 3), (100, 1_000_000)]:
        clip = Clip(limit)
        data = bytes(i % 251 for i in range(total))
        for i in range(0, total, 7):
            clip.add(data[i : i + 7])
        text, truncated = clip.result()
        if total <= limit:
            assert text == data.decode("utf-8", "replace")
            assert not truncated
        else:
            h, t = limit // 2, limit - limit // 2
            marker = TRUNCATION_MARKER.format(omitted=total - limit, total=total)
            assert text == data[:h].decode("utf-8", "replace") + marker + data[-t:].decode("utf-8", "replace")
            assert truncated


def test_default_config_is_hardened():
    c = SandboxConfig()
    assert (c.network_disabled, c.fresh_container, c.workdir, c.output_limit) == (True, False, "/testbed", 100_000)
    assert set(c.cap_add) == {"CHOWN", "DAC_OVERRIDE", "FOWNER"}


# ---------------------------------------------------------------- files
def test_write_and_read_any_content(sb):
    awkward = "quotes ' \" ` $x \\n \\ \r\n tabs\t\x00nul ünïcødé\n" * 3
    sb.write_file("/testbed/awkward.txt", awkward)
    assert sb.read_file("/testbed/awkward.txt") == awkward
    assert ok(sb, "od -An -c awkward.txt | head -1").split()[:6] == ["q", "u", "o", "t", "e", "s"]
    big = os.urandom(5 << 20)
    sb.write_file("/tmp/big.bin", big)
    assert sb.read_bytes("/tmp/big.bin") == big
    assert ok(sb, "sha256sum /tmp/big.bin").split()[0] == hashlib.sha256(big).hexdigest()


def test_write_keeps_mode_and_follows_symlinks(sb):
    ok(sb, "printf '#!/bin/sh\\necho v1\\n' > run.sh && chmod 750 run.sh && ln -s run.sh link.sh")
    sb.write_file("/testbed/link.sh", "#!/bin/sh\necho v2\n")
    assert ok(sb, "stat -c '%a %F' run.sh link.sh") == "750 regular file\n777 symbolic link\n"
    assert ok(sb, "./link.sh") == "v2\n"
    assert sb.read_file("/testbed/link.sh") == "#!/bin/sh\necho v2\n"


def test_file_errors(sb):
    assert sb.path_kind("/testbed") == "dir"
    assert sb.path_kind("/testbed/README.md") == "file"
    assert sb.path_kind("/testbed/missing") is None
    with pytest.raises(FileNotFoundError):
        sb.read_file("/testbed/missing")
    with pytest.raises(IsADirectoryError):
        sb.read_file("/testbed/calc")
    with pytest.raises(IsADirectoryError):
        sb.write_file("/testbed/calc", "x")
    with pytest.raises(FileNotFoundError):
        sb.write_file("/testbed/no/such/dir/f.txt", "x")


# ---------------------------------------------------------------- diff and reset
def _edit_repository(sb: Sandbox) -> None:
    ok(sb, "sed -i 's/a + b/b + a/' calc/ops.py && rm data.txt && mkdir -p new/pkg && echo new > new/pkg/mod.py")
    sb.write_file("/testbed/README.md", "# calc\n\nRewritten ünïcødé.\n")
    ok(sb, "echo log > run.log && mkdir -p calc/build && echo tmp > calc/build/extra.o")  # ignored files


def _host_git(args: list[str], cwd) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
    r = subprocess.run(["git", "-c", "safe.directory=*", *args], cwd=cwd, env=env, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode()


def test_diff_equals_git_diff_computed_on_the_host(sb, tmp_path):
    _edit_repository(sb)
    patch = sb.diff()
    # Independent: copy /testbed out through the archive API and let the host's git compute the patch.
    stream, _ = sb.api.get_archive(sb.container.id, "/testbed")
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        tar.extractall(tmp_path, filter="tar")
    repo = tmp_path / "testbed"
    _host_git(["add", "-A"], repo)
    assert patch == _host_git(["diff", "--cached", sb.base_commit], repo)
    assert "+Rewritten ünïcødé." in patch and "new file mode" in patch and "deleted file mode" in patch
    assert "run.log" not in patch and "extra.o" not in patch  # ignored files are not part of the patch
    assert sb.base_commit == ok(sb, "git rev-parse HEAD").strip()


def _fingerprint(sb: Sandbox) -> str:
    """Every file under /testbed (but .git) with its hash, and git's view of the tree."""
    return ok(sb, "cd /testbed && find . -path ./.git -prune -o -type f -print0 | sort -z | xargs -0 sha256sum"
                  " && git status --porcelain --ignored && git rev-parse HEAD")


def test_reset_returns_to_the_base_state(sb):
    before = _fingerprint(sb)
    assert "build/" in before  # the image's own ignored build output is part of the base state
    _edit_repository(sb)
    ok(sb, "git -c user.name=a -c user.email=a@b.c commit -qam 'agent commit' && echo more >> calc/__init__.py")
    ok(sb, "cd /tmp && export GONE=1 && (sleep 1000 &) && sleep 1000 &")
    assert _fingerprint(sb) != before
    sb.reset()
    assert sb.cwd == "/testbed"
    assert _fingerprint(sb) == before
    assert ok(sb, 'pwd; echo "[${GONE:-}]"') == "/testbed\n[]\n"
    assert "sleep 1000" not in ok(sb, "ps -eo args")
    assert sb.diff() == ""
    assert ok(sb, "cat build/artifact.bin") == "compiled\n"


def test_fresh_container_reset_replaces_the_container(sandbox_config, docker_client):
    sandbox_config.fresh_container = True
    with Sandbox(sandbox_config, client=docker_client) as sandbox:
        first = sandbox.container.id
        before = _fingerprint(sandbox)
        _edit_repository(sandbox)
        ok(sandbox, "echo outside > /tmp/outside && cd /tmp")
        sandbox.reset()
        assert sandbox.container.id != first
        assert not docker_client.containers.list(all=True, filters={"id": first})
        assert _fingerprint(sandbox) == before
        assert sandbox.cwd == "/testbed"
        assert sandbox.run("test -e /tmp/outside").exit_code == 1


# ---------------------------------------------------------------- lifecycle and gc
def test_context_manager_removes_the_container(sandbox_config, docker_client):
    sandbox = Sandbox(sandbox_config, client=docker_client)
    with pytest.raises(RuntimeError, match="not started"):
        sandbox.run("true")
    with sandbox:
        cid = sandbox.container.id
        assert docker_client.containers.get(cid).status == "running"
    assert not docker_client.containers.list(all=True, filters={"id": cid})
    sandbox.close()  # idempotent


def test_gc_removes_labelled_containers(docker_client, repo_image, run_label):
    from typer.testing import CliRunner

    from srl_agent.cli import app

    key, value = run_label.split("=")
    token = uuid.uuid4().hex[:8]
    labels = {LABEL: "1", key: value, "srl-agent.gc-test": token}

    def make(n: int) -> None:
        for _ in range(n):
            docker_client.containers.create(repo_image, ["true"], labels=labels, network_mode="none")

    make(2)
    assert gc(docker_client, label=f"srl-agent.gc-test={token}") == 2
    assert not docker_client.containers.list(all=True, filters={"label": f"srl-agent.gc-test={token}"})
    make(1)
    result = CliRunner().invoke(app, ["sandbox", "gc", "--json", "--label", f"srl-agent.gc-test={token}"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"removed": 1}


def test_no_container_left(docker_client, run_label):
    """Runs last in this module: every sandbox above removed its container."""
    left = docker_client.containers.list(all=True, filters={"label": run_label})
    assert not left, [(c.short_id, c.status, c.labels) for c in left]



@pytest.mark.parametrize("where", ["/testbed", "/tmp"])
def test_disk_hog_is_stopped(sandbox_config, docker_client, where):
    """2 GiB into /testbed and 1 GiB into /tmp once went straight onto the host's disk."""
    from dataclasses import replace

    from srl_agent.sandbox import DiskBudgetExceeded

    with Sandbox(replace(sandbox_config, disk="100m", timeout=60), client=docker_client) as box:
        with pytest.raises(DiskBudgetExceeded):
            box.run(f"dd if=/dev/zero of={where}/big bs=1M count=300 2>/dev/null; sleep 30")
        assert "sleep 30" not in box.run("ps -eo args").output  # the command was killed


def test_a_patch_over_the_limit_is_refused(sandbox_config, docker_client):
    from dataclasses import replace

    from srl_agent.sandbox import PatchTooLarge

    with Sandbox(replace(sandbox_config, patch_limit=10_000), client=docker_client) as box:
        box.run("seq 1 5000 > /testbed/numbers.txt")
        with pytest.raises(PatchTooLarge):
            box.diff()
        box.run("rm /testbed/numbers.txt && echo small > /testbed/small.txt")
        assert "+small" in box.diff()
