"""Times the reference vaderSentiment on the sentences the Rust bench (`benches/vader.rs`) uses.

Run: NUDGE_VADER_DIR=<dir where vaderSentiment is pip-installed> python3 crates/sentiment/benches/vader_reference.py [rounds]
"""

import os
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
ref_dir = os.environ.get("NUDGE_VADER_DIR")
if ref_dir:
    sys.path.insert(0, ref_dir)
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # noqa: E402

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
with open(os.path.join(here, "sentences.txt"), encoding="utf-8") as f:
    sentences = [line.rstrip("\n") for line in f if line.strip()]

analyzer = SentimentIntensityAnalyzer()
total = sum(analyzer.polarity_scores(s)["compound"] for s in sentences)
print(f"{len(sentences)} sentences, compound sum {total:.4f}, {rounds} rounds")
start = time.perf_counter()
for _ in range(rounds):
    for s in sentences:
        analyzer.polarity_scores(s)
elapsed = time.perf_counter() - start
n = rounds * len(sentences)
print(f"reference     {n / elapsed:12.0f} sentences/s single-threaded ({n} in {elapsed:.3f} s)")
