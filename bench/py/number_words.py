"""English number words, shared by the speech set (what is said) and the scorer (what is heard)."""

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
        "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
ORDINAL_ONES = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}


def ordinal_word(word):
    """The ordinal of a cardinal's last word: two -> second, twenty -> twentieth, six -> sixth."""
    if word in ORDINAL_ONES:
        return ORDINAL_ONES[word]
    if word.endswith("y"):
        return word[:-1] + "ieth"
    return word + "th"
