"""Prints the closing line of `make test`: the Criterion and pytest counts
added up, as 'test: N passed, N failed, N skipped'.

Reads the Criterion log (its 'Synthesis' lines) and pytest's JUnit XML."""
import re
import sys
import xml.etree.ElementTree as ET


def criterion_counts(log_path):
    passed = failed = 0
    with open(log_path, encoding="utf-8", errors="replace") as log:
        for line in log:
            m = re.search(r"Tested: (\d+) \| Passing: (\d+) \| Failing: (\d+) \| Crashing: (\d+)", line)
            if m:
                passed += int(m.group(2))
                failed += int(m.group(3)) + int(m.group(4))
    return passed, failed


def pytest_counts(xml_path):
    suite = ET.parse(xml_path).getroot()
    if suite.tag == "testsuites":
        suite = suite[0]
    total, failures, errors, skipped = (int(suite.get(k, 0)) for k in
                                        ("tests", "failures", "errors", "skipped"))
    return total - failures - errors - skipped, failures + errors, skipped


def main(log_path, xml_path):
    c_passed, c_failed = criterion_counts(log_path)
    p_passed, p_failed, p_skipped = pytest_counts(xml_path)
    print(f"C (Criterion): {c_passed} passed, {c_failed} failed")
    print(f"Python (pytest): {p_passed} passed, {p_failed} failed, {p_skipped} skipped")
    print(f"test: {c_passed + p_passed} passed, {c_failed + p_failed} failed, {p_skipped} skipped")
    return 1 if c_failed + p_failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
