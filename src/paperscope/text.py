"""Paper text: the one tokenizer, stop list and paper-text template of paperscope.

Lexical ranking (:mod:`paperscope.lexical`), the map's labels and features
(:mod:`paperscope.map.terms`) and the map page's search box all read text through these rules, so
a term means the same thing everywhere. Each rule is a plain regular expression or a fixed word
list, so it can be ported as it is (the map page's JavaScript port checks parity on sample strings).

Rules, in order:

1. ``clean``: Unicode NFKC (the micro sign ``µ`` becomes Greek ``μ``, full-width letters plain),
   LaTeX markup characters ``$ \\ { } ^`` removed (``u-$μ$P`` -> ``u-μP``), and an apostrophe
   with the letters after it removed (``model's`` -> ``model``, ``don't`` -> ``don``):
   ``LATEX = [$\\{}^]``, ``APOSTROPHE = ['’]\\w*``.
2. ``surface_tokens``: runs of letters or digits, joined by inner hyphens or dots:
   ``TOKEN = [^\\W_]+(?:[-.][^\\W_]+)*`` (JavaScript: ``[\\p{L}\\p{N}]+(?:[-.][\\p{L}\\p{N}]+)*`` with
   the ``u`` flag). A token longer than ``MAX_TOKEN_CHARS`` (40) is dropped: no word is that
   long, and one 100,000-character "token" must not cost memory per vocabulary entry.
3. ``fold``: lower case (``str.lower``, JavaScript ``toLowerCase``), then the field's spellings of
   one term mapped together by ``SYNONYMS`` (``mup``, ``μ-p`` -> ``μp``; ``mutransfer``,
   ``mu-transfer``, ``μ-transfer`` -> ``μtransfer``). ``LoRA`` -> ``lora``, ``3D`` -> ``3d``.
4. A token is dropped when its folded form is in ``STOP_WORDS`` (English function words, the
   scikit-learn list included, plus words every abstract uses), is a number
   (``NUMBER = [\\d.]+``), or is one character long (except ``μ``).
5. ``stem`` (ranking only): a small plural fold, two regexes on the folded word:
   ``^([^\\W\\d_]{2,})ies$`` -> ``\\1y`` and ``^([^\\W\\d_]{2,}[^\\W\\d_suia])s$`` -> ``\\1``
   (``models`` -> ``model``, ``studies`` -> ``study``; ``loss``, ``focus``, ``analysis`` kept);
   a stemmed word that is now a stop word (``pers`` -> ``per``) is dropped.
6. ``ranking_terms``: each kept token folded and stemmed; a compound (``text-to-3D``,
   ``GPT-3.5``) gives the whole compound and its kept parts (``text-to-3d``, ``text``, ``3d``),
   so it matches the exact phrase and each word. With ``phrases_too=True`` also the bigrams of
   adjacent kept tokens (``diffusion model``), never across punctuation: a phrase break is
   ``PHRASE_BREAK = [,;:()\\[\\]{}!?"]|\\.\\s``.
7. ``paper_text``: what is read of a paper: ``"{title}. {abstract}"``.

The map keeps surface forms (``LoRA``, not ``lora``) for its labels and skips, on top of the stop
words, ``LABEL_STOP_WORDS``: words that occur in abstracts of every topic and so cannot name one.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata

# Bump when any rule above changes: stored term counts (lexical.npz) of another version are re-tokenised.
TOKENIZER_VERSION = 2
MAX_TOKEN_CHARS = 40

LATEX = re.compile(r"[$\\{}^]")
APOSTROPHE = re.compile(r"['’]\w*")
TOKEN = re.compile(r"[^\W_]+(?:[-.][^\W_]+)*")
NUMBER = re.compile(r"[\d.]+")
PHRASE_BREAK = re.compile(r"[,;:()\[\]{}!?\"]|\.\s")
_COMPOUND_SPLIT = re.compile(r"[-.]")
_PLURAL_IES = re.compile(r"^([^\W\d_]{2,})ies$")
_PLURAL_S = re.compile(r"^([^\W\d_]{2,}[^\W\d_suia])s$")

# Spellings of one term that tokenisation alone would keep apart.
SYNONYMS = {"mup": "μp", "μ-p": "μp", "mutransfer": "μtransfer", "μ-transfer": "μtransfer", "mu-transfer": "μtransfer"}

# English function words (scikit-learn's ENGLISH_STOP_WORDS, copied so that the list is fixed and
# portable) plus words every abstract uses; none of them says what a paper is about.
STOP_WORDS = frozenset(
    """
a about above achieve achieves across after afterwards again against all almost alone along already also
although always am among amongst amoungst amount an and another any anyhow anyone anything anyway anywhere
approach approaches are aren around art as at available back based be became because become becomes becoming
been before beforehand behind being below beside besides between beyond bill both bottom but by call can
cannot cant co code con could couldnt cry de demonstrate demonstrates describe detail did different do does
doesn doing don done down due during each eg eight either eleven else elsewhere empty enough et etc even ever
every everyone everything everywhere except existing few fifteen fifty fill find fire first five for former
formerly forty found four from front full further get give go had has hasnt have having he hence her here
hereafter hereby herein hereupon hers herself him himself his how however hundred i ie if in inc indeed
interest into introduce introduces is isn it its itself just keep last latter latterly least less ltd made
many may me meanwhile method methods might mill mine more moreover most mostly move much must my myself name
namely neither never nevertheless new next nine no nobody none noone nor not nothing novel now nowhere of off
often on once one only onto or other others otherwise our ours ourselves out over own paper part particular
per perhaps please present presents propose proposed proposes put rather re result results same see seem
seemed seeming seems serious several she should show shown shows side significant significantly since sincere
six sixty so some somehow someone something sometime sometimes somewhere specifically state stateoftheart
still such system take ten than that the their theirs them themselves then thence there thereafter thereby
therefore therein thereupon these they thick thin third this those though three through throughout thru thus
to together too top toward towards twelve twenty two un under until up upon us use used uses using various
very via was we well were what whatever when whence whenever where whereafter whereas whereby wherein
whereupon wherever whether which while whither who whoever whole whom whose why will with within without won
work works would yet you your yours yourself yourselves
""".split()
)

# Also skipped in map labels: common in every topic's abstracts, so they name none.
LABEL_STOP_WORDS = frozenset(
    """
    paper propose proposed proposes present presents introduce introduces introduced approach approaches
    method methods model models result results show shows shown demonstrate demonstrates achieve achieves
    achieved performance state art new novel based using use used task tasks work works existing study
    studies significantly significant improve improves improved improvement improvements different various
    code available https github com www org experiments experimental extensive furthermore moreover
    however while also including include includes recent recently address provide provides problem problems
    framework frameworks leverage leverages enable enables effective effectively efficient efficiently
    approach key via like make makes made high low large small well better best outperforms outperform
    compared existing prior previous first second set sets number across within without does way ways
    allows allow need needs given specific general particular simple strong
    learning learn learned training train trained neural network networks deep data dataset datasets
    algorithm algorithms function functions terms term called able
""".split()
)


def paper_text(title: str, abstract: str) -> str:
    """What is read of a paper, by the lexical index and the map: ``"{title}. {abstract}"``."""
    return f"{title}. {abstract}"


def clean(text: str) -> str:
    """Rule 1: NFKC, LaTeX markup characters and apostrophe suffixes removed."""
    return APOSTROPHE.sub("", unicodedata.normalize("NFKC", LATEX.sub("", text)))


@functools.lru_cache(maxsize=1 << 18)  # pure, and called for every token of every text (see _CACHE below)
def fold(token: str) -> str:
    """Rule 3: the comparison key of a token (lower case, synonyms mapped); NFKC-cleans it too."""
    t = unicodedata.normalize("NFKC", token).lower()
    return SYNONYMS.get(t, t)


def stem(key: str) -> str:
    """Rule 5: plural -> singular on a folded word, so ``models`` meets ``model``."""
    out = _PLURAL_IES.sub(r"\1y", key)
    return out if out != key else _PLURAL_S.sub(r"\1", key)


def is_kept(key: str) -> bool:
    """Rule 4 on a folded token: not a stop word, not a number, more than one character (or ``μ``)."""
    return key not in STOP_WORDS and not NUMBER.fullmatch(key) and (len(key) > 1 or key == "μ")


# Rules 3-5 are pure functions of one token, and a corpus repeats its tokens: at a million papers
# these caches (bounded; tokens are at most MAX_TOKEN_CHARS long) make tokenising several times faster.
_CACHE = 1 << 18


@functools.lru_cache(maxsize=_CACHE)
def _kept_surface(token: str) -> bool:
    return len(token) <= MAX_TOKEN_CHARS and is_kept(fold(token))


@functools.lru_cache(maxsize=_CACHE)
def _phrase_key(token: str) -> str | None:
    key = stem(fold(token))
    return key if is_kept(key) else None


def surface_tokens(text: str) -> list[str]:
    """Rules 1, 2 and 4: the kept tokens of ``text`` as written (``LoRA``, ``u-μP``), in order."""
    return [t for t in (m.group() for m in TOKEN.finditer(clean(text))) if _kept_surface(t)]


def phrases(text: str) -> list[str]:
    """``text`` cut at phrase breaks (rule 6): bigrams never span these pieces."""
    return PHRASE_BREAK.split(text)


@functools.lru_cache(maxsize=_CACHE)
def _token_terms(token: str) -> tuple[str, ...]:
    return tuple(_token_terms_uncached(token))


def _token_terms_uncached(token: str) -> list[str]:
    key = fold(token)
    parts = _COMPOUND_SPLIT.split(key) if key not in SYNONYMS.values() else [key]
    if len(parts) == 1:
        return [s for s in (stem(key),) if is_kept(s)]  # "pers" -> "per" is a stop word again
    out = [key]
    for p in parts:
        p = stem(SYNONYMS.get(p, p))
        if is_kept(p):
            out.append(p)
    return out


def ranking_terms(text: str, *, phrases_too: bool = False) -> list[str]:
    """Rule 6: the terms lexical ranking indexes for ``text`` (and searches for, for a query)."""
    out: list[str] = []
    for piece in phrases(text) if phrases_too else [text]:
        toks = surface_tokens(piece)
        for t in toks:
            out.extend(_token_terms(t))
        if phrases_too:
            keys = [k for k in map(_phrase_key, toks) if k is not None]
            out.extend(f"{a} {b}" for a, b in itertools.pairwise(keys))
    return out


def tokenize(text: str) -> list[str]:
    """The unigram ranking terms of ``text`` (rules 1-6 without phrases), for explanations and tests."""
    return ranking_terms(text)
