"""How good are the anagrams: the Visual Anagrams metrics and the judges that feed them.

Rooms: `metrics` (alignment, concealment, success: pure functions of score matrices), `judges`
(one seam: "how well does view i show prompt j"), `folder` (`evaluate_folder`: a whole output folder
to ``metrics.csv`` and a summary). Nothing here prints.
"""

from ..outputs.records import METRICS_FILE
from .folder import evaluate_folder, summary
from .judges import CLIPJudge, DigitJudge, GlyphJudge, Judge, SecondDigitJudge, declared_judge, make_judge
from .metrics import alignment, concealment, success, summarize

__all__ = ["METRICS_FILE", "CLIPJudge", "DigitJudge", "GlyphJudge", "Judge", "SecondDigitJudge", "alignment",
           "concealment", "declared_judge", "evaluate_folder", "make_judge", "success", "summarize", "summary"]
