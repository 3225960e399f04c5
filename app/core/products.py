"""Product identity: one rule, used by the webhook and the audit, for "the same product".

Two names are one product when they read the same once case, spacing,
hyphens and spelled-out small numbers are set aside ("Galaxy S7",
"galaxy s-7", "Galaxy S seven", "GalaxyS7"), or when the hold flow lists
one as an alias of the other (`[product."Galaxy S7"] aliases = ["S7"]`).
"""
import re
from dataclasses import dataclass, field

NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "thirteen": "13", "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17",
    "eighteen": "18", "nineteen": "19", "twenty": "20",
}
_WORD = re.compile(r"[^\W_]+")


def product_key(name: str) -> str:
    """The comparable form of a product name: "Galaxy S-7" and "galaxy s seven" -> "galaxys7"."""
    words = _WORD.findall(str(name).casefold())
    return "".join(NUMBER_WORDS.get(word, word) for word in words)


@dataclass(frozen=True)
class ProductNames:
    """The hold flow's aliases: alias key -> the product's catalog name."""
    aliases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_pairs(cls, pairs) -> "ProductNames":
        """From (product, alias) pairs, e.g. rows of the product_aliases table."""
        return cls({product_key(alias): product for product, alias in pairs})

    def canonical(self, name: str) -> str:
        """The catalog name `name` stands for (itself when it is no alias)."""
        return self.aliases.get(product_key(name), name)

    def key(self, name: str) -> str:
        return product_key(self.canonical(name))

    def same(self, first: str, second: str) -> bool:
        return self.key(first) == self.key(second)


NO_ALIASES = ProductNames()


def same_product(first: str, second: str, names: ProductNames = NO_ALIASES) -> bool:
    """Whether two product names are one product (see the module docstring)."""
    return names.same(first, second)
