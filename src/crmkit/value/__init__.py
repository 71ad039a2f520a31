"""Customer value: summaries, RFM, cohorts, profitability and (extra ``models``) probabilistic CLV."""
