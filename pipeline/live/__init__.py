"""The live view: page, server-sent events, /metrics, the snapshot behind them, charts, `mailsla top`
and the live fault announcements."""
