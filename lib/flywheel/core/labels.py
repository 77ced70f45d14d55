"""The answers an expert can give besides the catalog's experts: triage asks for them, the ground truth
excludes them, the demo's simulated panel gives them."""

OUT_OF_SCOPE = "out_of_scope"  # no expert of the catalog covers the question
AMBIGUOUS = "ambiguous"  # the experts tied, or one could not decide
# why an unsatisfactory interaction went wrong: what the judges and the experts choose from
CAUSES = ("routing", "retrieval", "generation", OUT_OF_SCOPE, "other")
