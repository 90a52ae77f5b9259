"""Statistics for the leaderboard: intervals, paired tests, rank groups, tuning budget.

Inputs are per-example scores per run, in the same example order across the runs of one
experiment. Methods, each from a maintained library where one exists:

- Intervals (`mean_ci`, `corpus_ci`): `scipy.stats.bootstrap` over examples, BCa by default;
  corpus metrics (BLEU via sacrebleu, macro-F1 via scikit-learn) are recomputed per resample.
- Seeds (`seeds_ci`): two-level bootstrap (seeds, then examples within each seed), numpy.
- Paired tests (`paired_pvalue`): sign-flip permutation test of the mean difference
  (`scipy.stats.permutation_test`), exact McNemar for 0/1 scores (`scipy.stats.binomtest`);
  corpus metrics (`paired_corpus_pvalue`, `paired_bleu_pvalue`): approximate randomization
  through the same scipy test.
- Multiple comparisons (`holm`): Holm-Bonferroni via statsmodels' `multipletests`;
  `rank_groups` builds tied groups from Holm-adjusted paired tests.
- Corpus metrics over seeds (`corpus_seeds_ci`, `paired_corpus_seeds_pvalue`): the same
  two-level bootstrap and paired randomization on a pool of every seed's rows.
- Variants over seeds (`two_level_pvalue`, `two_level_corpus_pvalue`): a paired hierarchical
  bootstrap test (seeds unpaired, examples paired) that counts the variance between seeds.
- Budget (`expected_max_curve`): expected best score after n trials (Dodge et al., 2019).

numpy is imported eagerly; scipy, sacrebleu, scikit-learn and statsmodels only when a
function needs them. Nothing here imports torch.
"""

from .budget import expected_max_curve
from .corpus import bleu_statistic, macro_f1_statistic
from .groups import RankGroup, holm, rank_groups
from .intervals import Interval, SeedsInterval, corpus_ci, mean_ci, seeds_ci
from .paired import mcnemar_pvalue, paired_bleu_pvalue, paired_corpus_pvalue, paired_pvalue
from .seeds import (
    corpus_seeds_ci,
    paired_corpus_seeds_pvalue,
    seed_values,
    two_level_corpus_pvalue,
    two_level_pvalue,
)

__all__ = [
    "Interval",
    "RankGroup",
    "SeedsInterval",
    "bleu_statistic",
    "corpus_seeds_ci",
    "corpus_ci",
    "expected_max_curve",
    "holm",
    "macro_f1_statistic",
    "mcnemar_pvalue",
    "mean_ci",
    "paired_bleu_pvalue",
    "paired_corpus_pvalue",
    "paired_corpus_seeds_pvalue",
    "paired_pvalue",
    "rank_groups",
    "seed_values",
    "seeds_ci",
    "two_level_corpus_pvalue",
    "two_level_pvalue",
]
