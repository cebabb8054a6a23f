"""Reading interactions, vocabularies, splits, and the TFRecord and native formats."""
