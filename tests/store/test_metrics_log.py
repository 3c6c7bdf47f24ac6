"""metrics.jsonl (score_sde.store.metrics_log) after a hand edit or a kill: a line cut short stays
as it was (one unreadable line), and the next record starts a line of its own. Through the
launcher: tests/system/test_faults_hand.py."""

import json

from score_sde.store import metrics_log


def test_a_record_after_a_line_cut_short_is_readable(tmp_path, capsys):
    record = json.dumps({"step": 2, "time": 1.0, "training_loss": 0.5})
    cut = record + "\n" + record[:20]
    (tmp_path / metrics_log.JSONL).write_text(cut)
    with metrics_log.MetricsLogger(str(tmp_path), stream=None) as log:
        log.write(4, {"training_loss": 0.25})
        log.write(6, {"training_loss": 0.125})
    text = (tmp_path / metrics_log.JSONL).read_text()
    assert text.startswith(cut + "\n")  # the operator's bytes as they were
    rows = metrics_log.read(str(tmp_path)) or []
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert "skipped 1 unreadable line(s)" in capsys.readouterr().err
