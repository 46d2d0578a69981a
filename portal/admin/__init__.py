"""The admin area: every admin page and the queries behind them."""
