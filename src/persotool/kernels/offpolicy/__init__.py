"""Off-policy evaluation: the value of a target policy estimated from impressions another policy
logged (`estimators`), with a cross-fitted reward model for the model-based estimators
(`reward_model`). Arrays follow Open Bandit Pipeline's layout: one row per logged impression
(`item`, `position`, `reward`, the logger's propensity `pscore`), a target's `action_dist` of shape
(impressions, items, positions) and reward predictions `q_hat` of the same shape."""
