"""Scores texts with the reference vaderSentiment and prints one JSON object per line.

The reference package is imported from the directory named by NUDGE_VADER_DIR (a `pip install --target`
directory). Without arguments it scores the reference's own demo sentences, read from the module's source
(the string lists and the paragraph of its `__main__` block), so they are never copied into this
repository. With `--stdin` it scores the texts given as JSON strings, one per line, on standard input.

Output lines: {"source": "reference"|"stdin", "text": ..., "neg": ..., "neu": ..., "pos": ..., "compound": ...}
"""

import ast
import json
import os
import re
import sys


def reference_sentences(module_path):
    """The string lists and string constants assigned in the module's `if __name__ == '__main__'` block."""
    with open(module_path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    texts = []
    for node in tree.body:
        if not (isinstance(node, ast.If) and "__main__" in ast.dump(node.test)):
            continue
        for sub in ast.walk(node):
            if not isinstance(sub, ast.Assign):
                continue
            value = sub.value
            if isinstance(value, ast.List):
                items = [e.value for e in value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
                texts.extend(items)
            elif isinstance(value, ast.Constant) and isinstance(value.value, str) and len(value.value) > 40:
                # A paragraph: score it whole and sentence by sentence (split after . ! ? runs).
                paragraph = value.value
                texts.append(paragraph)
                texts.extend(s for s in re.split(r"(?<=[.!?])\s+", paragraph) if s)
    return texts


def main():
    ref_dir = os.environ.get("NUDGE_VADER_DIR")
    if not ref_dir:
        sys.exit("NUDGE_VADER_DIR is not set")
    sys.path.insert(0, ref_dir)
    from vaderSentiment import vaderSentiment as vs_module

    analyzer = vs_module.SentimentIntensityAnalyzer()
    if "--stdin" in sys.argv[1:]:
        source = "stdin"
        texts = [json.loads(line) for line in sys.stdin if line.strip()]
    else:
        source = "reference"
        texts = reference_sentences(vs_module.__file__)
        if not texts:
            sys.exit("found no demo sentences in " + vs_module.__file__)
    out = sys.stdout
    for text in texts:
        scores = analyzer.polarity_scores(text)
        record = {"source": source, "text": text}
        record.update({k: scores[k] for k in ("neg", "neu", "pos", "compound")})
        out.write(json.dumps(record, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
