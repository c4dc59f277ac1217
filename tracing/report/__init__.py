"""The compliance report: per agency, district and premises category, for an ISO
week or a day in Asia/Ho_Chi_Minh time, from the daily rollup and the premises registry.

`queries` reads, `build` computes and suppresses, `model` holds the result, and one
`render_*` module per format writes it (`html` with charts, `csv`, `json`, `xlsx`). The
html and xlsx formats need the optional extra `report` (matplotlib, openpyxl):
`extras.require` names the exact install command when they are missing.
"""
