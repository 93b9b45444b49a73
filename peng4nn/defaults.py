"""The engine's defaults, each named once: the settings models, the policies, the commands, replay,
the report and the plug-ins read them from here (the service's own knobs are in
``peng4nn_store.settings``). The values are the paper's (Table II) unless said otherwise."""

from __future__ import annotations

E = 0.5
"""Epochs trained per iteration: the curve is validated every half epoch."""

E_MAX = 20
"""Maximum epochs a network trains (the paper's budget)."""

N = 3
"""Most recent predictions that must agree before the prediction counts as stable."""

T = 0.5
"""Allowed spread, in accuracy points, of the last N predictions around their centre."""

L = 5.0
"""Epochs over which the minimum validation loss must not have decreased (the LOSS check)."""

C_MIN = 3
"""Fewest points a curve is fitted on (three parameters)."""

BACKEND = "fast"
"""Curve-fitting back-end: the exact vectorised fitter (``scipy`` is the reference)."""

SEARCH_POLICY = "adaptive"
"""The policy of a network of a search (a replayed file, a job with a search, a session with a search): it
ranks against the search and dominates ``paper`` on the evaluation runs (docs/ADAPTIVE.md)."""

LONE_POLICY = "paper"
"""The policy of a lone network: with nothing to rank against, adaptive's single-model rule ranks worse
than ``paper`` on the evaluation runs (docs/ADAPTIVE.md, "Defaults")."""
