"""The steps of a benchmark run. Each ``run(bench)`` measures one area next to its floor
and returns ``(result, report rows)``: the result goes to the JSON file, the rows (markdown
table rows) to the printed report."""
