"""Collects the RESULT lines of the SDK scenario scripts into a scenario × SDK table.

Usage: python3 interop/report.py JS_RESULTS PY_RESULTS
Each results file holds lines `RESULT|<id>|PASS|FAIL|SKIP|<detail>` (and optionally
`EXIT|<script>|<rc>`). An expected scenario without a result line counts as FAIL (the script
crashed or was killed by its timeout). SKIP cells count neither way and are explained below
the table and, when RINGCAST_SKIP_LOG names a file, appended to it as `SKIPPED …` lines
(scripts/test.sh summarises them). Ends with the line `N passed, N failed`; exit status 1
when anything failed. Standard library only.
"""

import os
import sys

ROWS = [
    ("1", "connect → session.started {id, appId, remoteAddress}"),
    ("2.string", "publish → on('<topic>.<type>'): string payload"),
    ("2.object", "publish → on('<topic>.<type>'): object payload"),
    ("2.nested", "publish → on('<topic>.<type>'): nested payload"),
    ("2.unicode", "publish → on('<topic>.<type>'): unicode payload"),
    ("2.empty", "publish → on('<topic>.<type>'): 0-length string"),
    ("3.publish", "waitForAck / wait_for_ack after publish"),
    ("3.send", "waitForAck / wait_for_ack after send"),
    ("4", "RPC: send → reply() → waitForReply / wait_for_reply"),
    ("5", "compress: true → binary frame (compression true), parsed"),
    ("5.http", "HTTP publish compress: true → binary frame, parsed"),
    ("6", "subscribe secure/x unpermitted → close 1008 + reason"),
    ("7", "HTTP publish (admin token) → SDK subscriber"),
    ("8", "presence connected/disconnected on secure/inbound"),
    ("9.receive", "cross-SDK: receives the other SDK's publish"),
    ("9.rpc", "cross-SDK: RPC answered by the other SDK"),
    ("10", "idle connection kept alive by pongs (ping every 2 s)"),
    ("11", "permessage-deflate offered by the SDK is negotiated (§3)"),
]
for alg in ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
            "ES256", "ES384", "ES512", "EdDSA"]:
    ROWS.append((f"T.{alg}", f"token {alg} (signed by the SDK's JWT library) accepted"))
ROWS += [
    ("N.expired", "refused 401: expired token"),
    ("N.wrong-key", "refused 401: wrong key (HS, RS, ES[, EdDSA])"),
    ("N.wrong-alg", "refused 401: alg not in the app's allow-list"),
    ("N.alg-confusion", "refused 401: HS256 keyed with the RSA public PEM"),
    ("N.none", "refused 401: alg none"),
]
SDKS = [("JS", 1), ("Python", 2)]


def load(path):
    results, exits = {}, []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split("|", 3)
                if parts[0] == "RESULT" and len(parts) >= 3:
                    results[parts[1]] = (parts[2], parts[3] if len(parts) > 3 else "")
                elif parts[0] == "EXIT" and len(parts) >= 3:
                    exits.append((parts[1], parts[2]))
    except OSError as error:
        exits.append((path, f"unreadable: {error}"))
    return results, exits


def main():
    loaded = [load(sys.argv[i]) for _, i in SDKS]
    width = max(len(f"{rid:<16}{label}") for rid, label in ROWS)
    header = f"{'scenario':<{width}} | " + " | ".join(f"{name:<6}" for name, _ in SDKS)
    print(header)
    print("-" * len(header))
    passed = failed = 0
    notes = []
    for rid, label in ROWS:
        cells = []
        for (name, _), (results, _exits) in zip(SDKS, loaded):
            status, detail = results.get(rid, ("FAIL", "no result (script crashed or timed out)"))
            if status == "PASS":
                passed += 1
            elif status == "SKIP":
                notes.append(f"SKIP {name} {rid}: {detail}")
            else:
                status = "FAIL"
                failed += 1
                notes.append(f"FAIL {name} {rid}: {detail}")
            cells.append(f"{status:<6}")
        print(f"{rid:<16}{label:<{width - 16}} | " + " | ".join(cells))
    for (name, _), (results, exits) in zip(SDKS, loaded):
        unknown = sorted(set(results) - {rid for rid, _ in ROWS})
        for rid in unknown:
            notes.append(f"NOTE {name}: unexpected result id {rid}")
        for script, rc in exits:
            if rc != "0":
                notes.append(f"NOTE {name}: {script} exited with {rc}")
    if notes:
        print()
        for note in notes:
            print(note)
    skip_log = os.environ.get("RINGCAST_SKIP_LOG")
    if skip_log:
        with open(skip_log, "a", encoding="utf-8") as log:
            for note in notes:
                if note.startswith("SKIP "):
                    log.write(f"SKIPPED sdk-interop.sh {note[len('SKIP '):]}\n")
    print()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
