"""`persotool ope`: target policies valued on a logged impression log (off-policy evaluation)."""

from persotool.cli.stage import Source, Spec

EXAMPLES = """
[bold]Examples[/bold]

  persotool ingest obd/random/all/all.csv --schema obd -o build/obd-random
  persotool ope build/obd-random --policy bts_action_dist.npy -o build/ope-bts

  persotool ope build/shop-impressions --policy build/recs/recs.parquet --epsilon 0.2 -o build/ope-recs \\
      --max recs.loss_high=0.001
"""

SPEC = Spec(
    name="ope",
    summary="Off-policy evaluation: estimate target policies' value per impression from an impression log "
    "(IPS, SNIPS, DM, DR, SNDR, Switch-DR, DRos), with intervals, diagnostics and the estimator SLOPE selects.",
    examples=EXAMPLES,
    source=Source("A dataset directory of an impression log (`persotool ingest` with a reward column)."),
    flags={"policies": "--policy"},
    after="Written to {out}/estimates.csv (and .json), forest.png, weights.png and report.html.",
)
