"""Lip-sync accuracy of the lite engine, measured on rendered video (shared by tests/lite and
benchmarks/lite_lipsync.py): espeak-ng speech with its own phoneme timing, pocketsphinx forced
alignment of the known words, an independent landmark detector on the decoded MP4, scores."""
