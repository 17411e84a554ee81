"""Run inside a private network namespace (``unshare -n``): Redis, ``sessiond run
--registrar 127.0.0.1`` and baresip registering alice over UDP and bob over TCP (both
answering calls by themselves, ``answermode=auto``; netns_baresip_register.py), then a sipp
caller dialling ``sip:alice@127.0.0.1`` and ``sip:bob@127.0.0.1``: each call reaches baresip
through its binding (bob's over the TCP connection baresip opened), is answered, and the
caller hangs up.

    unshare -n python netns_baresip_called.py WORKDIR

Writes WORKDIR/result.json (``calls``: user -> sipp's exit status, ``error``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared helpers
from netns_baresip_register import ACCOUNTS, bindings, register  # noqa: E402
from netns_run import SIP_PORT, Procs, drive  # noqa: E402

from sipp_scenarios import caller  # noqa: E402


def called(work: Path, procs: Procs, client: Any, result: dict[str, Any]) -> None:
    register(work, procs, client, ";answermode=auto")
    result["bindings"] = bindings(client)
    for user in ACCOUNTS:
        scenario = caller("hangs_up").replace('"180"/>', '"180" optional="true"/>')
        scenario = scenario.replace("[service]@[remote_ip]:[remote_port]", f"{user}@127.0.0.1")
        path = work / f"call-{user}.xml"
        path.write_text(scenario)
        run = subprocess.run(
            ["sipp", f"127.0.0.1:{SIP_PORT}", "-sf", str(path), "-m", "1", "-i", "127.0.0.1"]
            + ["-p", "5100", "-mp", "6100", "-timeout", "20", "-nostdin"]
            + ["-trace_err", "-error_file", str(work / f"sipp-{user}.err")],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            cwd=work,
        )
        result["calls"][user] = run.returncode
        (work / f"sipp-{user}.out").write_text(run.stdout[-3000:])


if __name__ == "__main__":
    drive(called, calls={})
