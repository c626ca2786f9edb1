"""`mnv3det check-app`: does a user's own app (C++, Java, Swift, ...) get the boxes mnv3det gets, and if not, why?

    predictions.py  read the app's boxes (YOLO txt folder or json) per image
    mistakes.py     the reference pipeline and the usual app mistakes, as a table of step settings
    matching.py     greedy per-class IoU matching, and the sums that rank the explanations
    check.py        check_app() -> CheckAppResult (verdict, one line with the evidence, per-image numbers)
    report.py       the rich tables the CLI prints
"""
