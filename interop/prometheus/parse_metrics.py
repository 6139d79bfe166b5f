"""Parses a Prometheus text exposition (format 0.0.4) from stdin with the
official Python client's parser and prints one JSON line:

    {"families": [{"name": ..., "type": ..., "help": ...,
                   "samples": [{"name": ..., "labels": {...}, "value": ...}]}]}

Exits non-zero (with the parser's error on stderr) when the text does not
parse. Used by e2e/tests/telemetry/ to read spinel-server's and
spinel-agent's /metrics independently of Spinel's own code.
"""

import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def number(value):
    # JSON has no infinities or NaN; +Inf appears as a bucket bound label,
    # not as a value, but be safe.
    if math.isinf(value) or math.isnan(value):
        return str(value)
    return value


def main():
    text = sys.stdin.read()
    families = []
    for family in text_string_to_metric_families(text):
        families.append(
            {
                "name": family.name,
                "type": family.type,
                "help": family.documentation,
                "samples": [
                    {
                        "name": sample.name,
                        "labels": dict(sample.labels),
                        "value": number(sample.value),
                    }
                    for sample in family.samples
                ],
            }
        )
    print(json.dumps({"families": families}))


if __name__ == "__main__":
    main()
