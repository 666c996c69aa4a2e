#!/usr/bin/env python3
"""Compares an Autobahn|Testsuite run against the committed expectations.

Usage:
  compare.py check  INDEX_JSON EXPECTED_JSON   # exit 1 on any regression
  compare.py record INDEX_JSON EXPECTED_JSON   # write EXPECTED_JSON from this run
  compare.py summary INDEX_JSON                # behaviour counts per section

INDEX_JSON is the fuzzingclient's reports/index.json ({agent: {case id: {...}}}).
EXPECTED_JSON maps case id -> behaviour. A case regresses when its behaviour is worse than
expected (rank: OK > NON-STRICT > INFORMATIONAL > UNIMPLEMENTED > FAILED), when its close
behaviour is FAILED, or when it has no expectation at all. A run may cover only some of the
expected cases (the CI selection). Cases that get better are reported, so the expectations
can be re-recorded (AUTOBAHN_CASES=full AUTOBAHN_RECORD=1 scripts/suites/autobahn.sh).
Ends with "N passed, N failed" (one line per case compared).
"""
import json
import sys
from collections import Counter, defaultdict

# Worse behaviours rank lower. INFORMATIONAL cases carry no verdict; UNIMPLEMENTED
# (an extension offer we decline) is acceptable only where it is expected.
RANK = {"FAILED": 0, "UNIMPLEMENTED": 1, "INFORMATIONAL": 2, "NON-STRICT": 3, "OK": 4}


def case_key(case_id):
    return tuple(int(part) for part in case_id.split("."))


def load_run(path):
    with open(path) as handle:
        index = json.load(handle)
    if len(index) != 1:
        sys.exit("expected exactly one agent in %s, found %s" % (path, sorted(index)))
    (cases,) = index.values()
    return cases


def summary(cases):
    per_section = defaultdict(Counter)
    for case_id, result in cases.items():
        per_section[int(case_id.split(".")[0])][result["behavior"]] += 1
    for section in sorted(per_section):
        counts = ", ".join("%s %d" % item for item in sorted(per_section[section].items()))
        print("  section %2d: %s" % (section, counts))


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("check", "record", "summary"):
        sys.exit(__doc__)
    mode, index_path = sys.argv[1], sys.argv[2]
    cases = load_run(index_path)
    if mode == "summary":
        summary(cases)
        return 0
    expected_path = sys.argv[3]
    if mode == "record":
        expected = {case_id: cases[case_id]["behavior"] for case_id in sorted(cases, key=case_key)}
        with open(expected_path, "w") as handle:
            json.dump(expected, handle, indent=1)
            handle.write("\n")
        print("recorded %d cases into %s" % (len(expected), expected_path))
        return 0
    with open(expected_path) as handle:
        expected = json.load(handle)
    passed = failed = 0
    for case_id in sorted(cases, key=case_key):
        result = cases[case_id]
        actual, close = result["behavior"], result.get("behaviorClose", "OK")
        want = expected.get(case_id)
        if want is None:
            print("FAIL - %s: %s, but the case has no expectation (re-record)" % (case_id, actual))
            failed += 1
        elif RANK.get(actual, 0) < RANK[want] or close == "FAILED":
            print("FAIL - %s: expected %s, got %s (close %s)" % (case_id, want, actual, close))
            failed += 1
        else:
            if RANK.get(actual, 0) > RANK[want]:
                print("note - %s improved: %s -> %s (re-record)" % (case_id, want, actual))
            passed += 1
    summary(cases)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
