"""The names creation templates use, as ECR spells them: the catch-all prefix, and what a
template applies to. Apart from the store (templates.py) so that the command line can use
them cheaply."""

from __future__ import annotations

ROOT = "ROOT"
PULL_THROUGH_CACHE = "PULL_THROUGH_CACHE"
