"""ope: the value of target policies estimated from an impression log another policy wrote
(off-policy evaluation), each estimator with its interval and its difference against the logger."""

from persotool.stages import Stage

STAGE = Stage(name="ope", kind="ope", config="OpeConfig", result="OpeResult", source="dataset")
