"""Answering decisions: does the corpus cover the question (match, the gate's word-by-word
reading), which retrieved papers answer it (answerable), which sentences state findings
(roles), and the fitted-model type they share (fitted)."""
