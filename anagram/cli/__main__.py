"""``python -m anagram.cli ...`` (what torchrun and accelerate launch start)."""

from . import main

main()
