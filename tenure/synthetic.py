"""A deterministic synthetic shop with realistic, learnable customer behaviour.

:func:`generate_shop` builds customers, a product catalogue and ~1M order lines (defaults) in
canonical form (see :mod:`tenure.data`). Same arguments -> identical frames.

Purchasing follows a buy-till-you-die process per customer:

* purchase rate: gamma-distributed across customers; 30% are *regular* (replenishment: gaps are
  gamma with shape 3-6, i.e. a steady rhythm), the rest *irregular* (exponential gaps);
* dropout: after every order the customer leaves with probability ``p`` (beta-distributed,
  times the drivers below), so many buy once or twice and a few buy for years;
* reactivation: a customer who leaves may come back after a pause of 180-540 days (at most
  twice); the chance is a per-customer trait, higher for email/sms/push customers (win-back
  campaigns reach them) and for customers with a longer history;
* seasonality: the purchase rate is modulated by month (Nov/Dec high, Jun-Aug low) by running
  the gap clock in "seasonal time";
* orders happen between the signup date and ``end``; 82% buy on the signup day, ~11% later,
  ~7% never.

Churn drivers beyond recency, all observable in the tables (a model can beat recency-only):

* returns: an order with a return multiplies that order's dropout probability by 3, and every
  later one by 1.3; return propensity is a customer trait (~2.5-3% of lines are returned);
* declining spend: 25% of customers are *fading*: lines and quantities per order shrink with
  each order (spend factor 0.75^k), their gaps grow 15% per order and their dropout
  probability grows by 40% of the base per order;
* preferred channel (mode of the order ``channel``): social x1.6, push x1.2, sms x1.0,
  web x0.95, email x0.7;
* region: Islands x1.35, South x1.15, Capital x1.05, East/Central x1.0, West x0.95,
  North/Coastal x0.85;
* age: under 25 x1.25, over 60 x0.8;
* regularity: regular customers have 0.6x the dropout and a predictable gap, so "overdue
  relative to the usual gap" is a strong signal for them;
* frequency: dropout scales with (mean gap / 30 days)^0.25, so heavy buyers are also loyal.

On the default shop (cutoffs 2024-12-31 -> 2025-06-30, 120-day horizon) a LightGBM on simple
RFM + gap + return + spend-trend + demographic features beats recency alone: AUC 0.89 vs 0.88
on all past buyers, 0.80 vs 0.76 on customers active in the last 180 days.

Clock time (for send-time optimisation, tenure.sendtime): every customer has a daily rhythm in their
local time, a type (15% early birds peaking ~07:30, 25% lunch ~12:30, 40% evening ~20:00, 20% night
owls ~23:00) with a personal peak hour (+-1 h) and concentration, mixed with the shop-wide hourly
profile (30% of customers only weakly); and a favourite weekday to which a personal share of their
orders (Beta(2, 3), never the first order) moves by at most 3 days. 20% of customers live in
America/New_York (customers ``timezone``), the rest in the shop's Europe/London (``Shop.timezone``; 40%
of them with the zone unknown, ""): ``ts`` is the local time converted into the shop's zone. The
traits come from their own generator, so every other draw is the one it was without rhythms.

Baskets: 1-8 lines (mean ~3). Each customer has Dirichlet category preferences tilted by age,
gender and region, 2-6 favourite products re-bought often, and each product has 1-3
complements (same or related category) that join the basket together with it. Product
popularity is Zipf-like within a category; prices are log-normal per category.

What customers told us in forms (tenure.attributes columns of the customers table, drawn from a
generator of their own, so the behaviour above does not depend on them): household size (1-6,
10% not given), declared interests (40% declare 1-3 categories drawn from their own category
preferences, so they are informative), a newsletter choice (weekly/monthly/none/not given) and
consents for email, sms and push (10/15/20% refuse; customers refuse the channel they prefer
much less often than the others, but 5% of them do; 8% unknown).
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

import numpy as np
import pandas as pd

from tenure.data import STRING_DTYPE, Shop

logger = logging.getLogger(__name__)


class _Category(NamedTuple):
    name: str
    median_price: float
    adjectives: tuple[str, ...]
    nouns: tuple[str, ...]


_CATEGORIES: tuple[_Category, ...] = (
    _Category("Coffee", 12.0,
        ("Ethiopian Single-Origin", "Colombian", "Dark Roast", "Espresso", "Decaf", "Organic",
         "Guatemalan", "Kenyan AA", "House Blend", "Sumatra Mandheling", "Brazilian",
         "Breakfast Blend"),
        ("Coffee Beans", "Ground Coffee", "Coffee Pods", "Instant Coffee", "Coffee Capsules",
         "Whole Bean Coffee", "Drip Bags", "Cold Brew Concentrate", "Coffee Sampler")),
    _Category("Tea", 9.0,
        ("Darjeeling", "Earl Grey", "Jasmine", "Sencha", "Rooibos", "Chamomile", "Assam",
         "Oolong", "Peppermint", "Chai", "Lapsang Souchong", "Matcha"),
        ("Tea Bags", "Loose Leaf Tea", "Tea Tin", "Tea Sampler", "Pyramid Tea Bags", "Iced Tea Mix",
         "Tea Gift Box", "Herbal Infusion", "Tea Concentrate")),
    _Category("Bakery", 5.0,
        ("Sourdough", "Rye", "Butter", "Almond", "Cinnamon", "Chocolate", "Wholegrain", "Brioche",
         "Lemon", "Gluten-Free", "Seeded", "Honey Oat"),
        ("Loaf", "Croissants", "Muffins", "Cookies", "Biscotti", "Bagels", "Scones", "Rolls",
         "Pound Cake")),
    _Category("Snacks", 4.0,
        ("Sea Salt", "Smoked Paprika", "Honey Roasted", "Spicy", "Salted Caramel", "Cheddar",
         "Sweet Chili", "Rosemary", "Dark Chocolate", "Wasabi", "Barbecue", "Truffle"),
        ("Crisps", "Almonds", "Cashews", "Popcorn", "Pretzels", "Rice Crackers", "Trail Mix",
         "Granola Bars", "Peanuts")),
    _Category("Kitchen", 25.0,
        ("Stainless Steel", "Cast Iron", "Bamboo", "Non-Stick", "Ceramic", "Copper", "Silicone",
         "Enamel", "Glass", "Carbon Steel", "Olive Wood", "Professional"),
        ("Frying Pan", "Saucepan", "Chef's Knife", "Cutting Board", "Mixing Bowls", "Colander",
         "Spatula Set", "French Press", "Measuring Cups")),
    _Category("Home", 30.0,
        ("Linen", "Scandinavian", "Velvet", "Rattan", "Wool", "Minimalist", "Vintage", "Marble",
         "Cotton", "Oak", "Terracotta", "Boho"),
        ("Cushion Cover", "Throw Blanket", "Table Lamp", "Vase", "Candle", "Picture Frame",
         "Storage Basket", "Wall Clock", "Doormat")),
    _Category("Garden", 22.0,
        ("Heirloom", "Organic", "Galvanised", "Weatherproof", "Cedar", "Solar", "Ergonomic",
         "Compact", "Heavy-Duty", "Self-Watering", "Perennial", "Wildflower"),
        ("Seed Kit", "Planter", "Pruning Shears", "Watering Can", "Garden Gloves", "Compost Bin",
         "Hose", "Bird Feeder", "Trowel")),
    _Category("Outdoor", 45.0,
        ("Ultralight", "Waterproof", "Insulated", "Packable", "Alpine", "Trail", "Expedition",
         "Windproof", "Folding", "Thermal", "Rugged", "Weekend"),
        ("Tent", "Sleeping Bag", "Backpack", "Headlamp", "Camping Stove", "Water Bottle",
         "Hammock", "Trekking Poles", "Camp Chair")),
    _Category("Running", 60.0,
        ("Lightweight", "Cushioned", "Breathable", "Reflective", "Trail", "Marathon",
         "Compression", "Seamless", "Tempo", "Carbon-Plate", "Winter", "Race-Day"),
        ("Running Shoes", "Running Shorts", "Running Tights", "Running Jacket", "Running Socks",
         "Hydration Vest", "Cap", "Sports Bra", "Armband")),
    _Category("Cycling", 55.0,
        ("Aero", "Carbon", "Gravel", "Commuter", "Padded", "LED", "Tubeless", "Windproof",
         "Thermal", "Road", "Mountain", "Touring"),
        ("Bike Helmet", "Cycling Jersey", "Bib Shorts", "Bike Light", "Inner Tube", "Saddle",
         "Bike Lock", "Cycling Gloves", "Pannier")),
    _Category("Books", 15.0,
        ("Illustrated", "Bestselling", "Classic", "Pocket", "Hardcover", "Annotated",
         "Award-Winning", "Beginner's", "Complete", "Collector's", "Essential", "Modern"),
        ("Cookbook", "Crime Novel", "Travel Guide", "Biography", "Poetry Collection",
         "History Book", "Science Fiction Novel", "Gardening Handbook", "Children's Book")),
    _Category("Toys", 20.0,
        ("Wooden", "Magnetic", "Plush", "Educational", "Musical", "Remote-Control", "Rainbow",
         "Stacking", "Glow-in-the-Dark", "Classic", "Building", "Pocket"),
        ("Puzzle", "Train Set", "Teddy Bear", "Building Blocks", "Board Game", "Doll House",
         "Kite", "Race Car", "Art Kit")),
    _Category("Beauty", 18.0,
        ("Matte", "Long-Lasting", "Vegan", "Shimmer", "Nude", "Waterproof", "Velvet", "Dewy",
         "Hydrating", "Volumising", "Sheer", "Bold"),
        ("Lipstick", "Mascara", "Eyeshadow Palette", "Foundation", "Nail Polish", "Blush",
         "Eyeliner", "Makeup Brushes", "Setting Spray")),
    _Category("Skincare", 24.0,
        ("Hyaluronic", "Vitamin C", "Retinol", "Gentle", "Niacinamide", "Aloe", "Ceramide",
         "Fragrance-Free", "Overnight", "Brightening", "Soothing", "SPF 50"),
        ("Serum", "Moisturiser", "Cleanser", "Face Mask", "Eye Cream", "Toner", "Sunscreen",
         "Lip Balm", "Body Lotion")),
    _Category("Pets", 16.0,
        ("Grain-Free", "Salmon", "Chicken", "Senior", "Puppy", "Kitten", "Hypoallergenic",
         "Dental", "Orthopedic", "Catnip", "Reflective", "Chew-Proof"),
        ("Dog Food", "Cat Food", "Dog Treats", "Cat Litter", "Pet Bed", "Leash", "Scratching Post",
         "Chew Toy", "Grooming Brush")),
    _Category("Baby", 19.0,
        ("Organic Cotton", "Bamboo", "Hypoallergenic", "Newborn", "Soft", "Sensory", "Eco",
         "Fragrance-Free", "Muslin", "Anti-Colic", "Swaddle", "Travel"),
        ("Nappies", "Baby Wipes", "Bodysuit", "Baby Bottle", "Teether", "Blanket", "Bib Set",
         "Baby Shampoo", "Sleep Sack")),
    _Category("Electronics", 80.0,
        ("Wireless", "Smart", "Portable", "USB-C", "Fast-Charging", "4K", "Compact", "Solar",
         "Rugged", "Dual-Band", "Magnetic", "Low-Energy"),
        ("Power Bank", "Charger", "Webcam", "Smart Plug", "Keyboard", "Mouse", "Phone Case",
         "Fitness Tracker", "Router")),
    _Category("Audio", 70.0,
        ("Noise-Cancelling", "Wireless", "Studio", "Bass-Boost", "Waterproof", "Hi-Fi", "Retro",
         "Open-Back", "True Wireless", "Portable", "Over-Ear", "Bluetooth"),
        ("Headphones", "Earbuds", "Speaker", "Soundbar", "Turntable", "Microphone", "DAC",
         "Radio", "Amplifier")),
    _Category("Stationery", 7.0,
        ("Dotted", "Leather-Bound", "Recycled", "Pastel", "Fine-Tip", "Refillable", "Spiral",
         "Kraft", "Weekly", "A5", "Gel", "Fountain"),
        ("Notebook", "Planner", "Pen Set", "Sketchbook", "Highlighters", "Sticky Notes",
         "Envelopes", "Washi Tape", "Pencil Case")),
    _Category("Wine", 14.0,
        ("Rioja", "Chianti", "Malbec", "Sauvignon Blanc", "Pinot Noir", "Prosecco", "Shiraz",
         "Chardonnay", "Rosé", "Merlot", "Riesling", "Tempranillo"),
        ("Red Wine", "White Wine", "Sparkling Wine", "Magnum", "Wine Gift Set", "Half Bottle",
         "Reserva", "Organic Wine", "Case of Six")),
)  # fmt: skip

# name variants used only when a category needs more products than adjective x noun pairs
_VARIANTS: tuple[str, ...] = (
    "Family Size", "Travel Size", "Gift Set", "Twin Pack", "Limited Edition", "Value Pack",
)  # fmt: skip

# categories bought together (complements cross these edges)
_RELATED: tuple[tuple[str, str], ...] = (
    ("Coffee", "Bakery"), ("Tea", "Bakery"), ("Coffee", "Kitchen"), ("Tea", "Kitchen"),
    ("Snacks", "Wine"), ("Bakery", "Snacks"), ("Running", "Outdoor"), ("Cycling", "Outdoor"),
    ("Running", "Electronics"), ("Beauty", "Skincare"), ("Baby", "Toys"), ("Baby", "Skincare"),
    ("Electronics", "Audio"), ("Books", "Stationery"), ("Garden", "Home"), ("Garden", "Outdoor"),
    ("Pets", "Home"), ("Kitchen", "Home"), ("Wine", "Kitchen"), ("Toys", "Books"),
)  # fmt: skip

# replenishment categories: regular customers lean towards them
_REPLENISH: tuple[str, ...] = ("Coffee", "Tea", "Pets", "Baby", "Skincare", "Snacks")

_CHANNELS: tuple[str, ...] = ("email", "sms", "push", "web", "social")
_CHANNEL_SHARE = (0.35, 0.15, 0.15, 0.25, 0.10)
_CHANNEL_DROPOUT = (0.70, 1.00, 1.20, 0.95, 1.60)
# win-back campaigns reach email/sms/push customers: they come back more often after a pause
_CHANNEL_REACTIVATION = (1.8, 1.2, 1.2, 0.8, 0.6)

_REGIONS: tuple[str, ...] = (
    "North",
    "South",
    "East",
    "West",
    "Central",
    "Coastal",
    "Islands",
    "Capital",
)
_REGION_SHARE = (0.14, 0.13, 0.12, 0.12, 0.14, 0.11, 0.06, 0.18)
_REGION_DROPOUT = (0.85, 1.15, 1.00, 0.95, 1.00, 0.85, 1.35, 1.05)
# category tilts (log-alpha) per region, as (region, category, tilt)
_REGION_TILT: tuple[tuple[str, str, float], ...] = (
    ("North", "Tea", 0.8), ("North", "Home", 0.5), ("South", "Wine", 0.8), ("South", "Garden", 0.5),
    ("Coastal", "Outdoor", 0.8), ("Coastal", "Wine", 0.4), ("Islands", "Outdoor", 0.9),
    ("Islands", "Books", 0.5), ("Capital", "Coffee", 0.8), ("Capital", "Electronics", 0.6),
    ("Capital", "Running", 0.5), ("West", "Cycling", 0.8), ("East", "Bakery", 0.6),
    ("Central", "Kitchen", 0.5),
)  # fmt: skip

_GENDERS: tuple[str, ...] = ("F", "M", "X")
_GENDER_SHARE = (0.52, 0.45, 0.03)
_GENDER_TILT: tuple[tuple[str, str, float], ...] = (
    ("F", "Beauty", 1.3), ("F", "Skincare", 1.0), ("F", "Baby", 0.4), ("F", "Books", 0.3),
    ("M", "Cycling", 0.9), ("M", "Electronics", 0.8), ("M", "Audio", 0.7), ("M", "Wine", 0.3),
    ("X", "Stationery", 0.8), ("X", "Audio", 0.5), ("X", "Books", 0.5),
)  # fmt: skip
# (min age, max age, category, tilt)
_AGE_TILT: tuple[tuple[int, int, str, float], ...] = (
    (18, 30, "Electronics", 0.7), (18, 30, "Audio", 0.8), (18, 35, "Running", 0.6),
    (18, 30, "Snacks", 0.5), (28, 42, "Baby", 1.4), (30, 48, "Toys", 1.0),
    (45, 80, "Garden", 1.0), (50, 80, "Books", 0.6), (50, 80, "Tea", 0.6), (35, 70, "Wine", 0.5),
    (35, 65, "Kitchen", 0.4),
)  # fmt: skip

# order-rate multiplier by calendar month (Jan..Dec)
_SEASON = (0.90, 0.88, 0.98, 1.00, 0.95, 0.80, 0.74, 0.80, 1.00, 1.05, 1.35, 1.55)
# share of orders by hour of day: quiet nights, lunch and evening peaks
_HOUR_WEIGHT = (
    0.3, 0.2, 0.1, 0.1, 0.1, 0.2, 0.5, 1.0, 1.6, 2.0, 2.2, 2.5,
    3.0, 2.8, 2.3, 2.2, 2.3, 2.6, 3.2, 3.8, 4.0, 3.6, 2.4, 1.0,
)  # fmt: skip

_NS_PER_DAY = 86_400 * 10**9

# ---- daily rhythms (send-time optimisation): traits from their own generator, [seed, 1013] ----------
SHOP_TIMEZONE = "Europe/London"
OTHER_TIMEZONE = "America/New_York"
_OTHER_ZONE_SHARE = 0.2
_KNOWN_ZONE_SHARE = 0.6
"""Of the shop-zone customers, this share has the zone in the customers file ("" for the rest: unknown)."""
# rhythm types: (share, peak hour in local time): early bird, lunch, evening, night owl
_RHYTHM_TYPES = ((0.15, 7.5), (0.25, 12.5), (0.40, 20.0), (0.20, 23.0))
_WEAK_RHYTHM_SHARE = 0.3
_WEEKDAY_WEIGHT = (0.13, 0.12, 0.12, 0.13, 0.15, 0.17, 0.18)  # favourite weekday, Monday first


def _clock(o_cust: np.ndarray, o_t: np.ndarray, u_hour: np.ndarray, second: np.ndarray,
           signup_day: np.ndarray, first_t: np.ndarray, horizon: float, t0: pd.Timestamp,
           seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each order's time in seconds after ``t0`` in the shop's zone, and each customer's zone ("": unknown).

    Every customer has a daily rhythm in their local time: a type (early bird, lunch, evening, night
    owl) with a personal peak hour and concentration (von Mises over the day), mixed with the
    shop-wide profile (weakly for 30% of customers); and a favourite weekday that a personal share of
    their orders (never the first) moves to, by at most 3 days, never before the first order and never
    past the end. 20% live in America/New_York: their local times are converted into the shop's zone.
    """
    n = len(signup_day)
    traits = np.random.default_rng([seed, 1013])
    kind = traits.choice(len(_RHYTHM_TYPES), size=n, p=[t[0] for t in _RHYTHM_TYPES])
    peak = np.asarray([t[1] for t in _RHYTHM_TYPES])[kind] + traits.normal(0.0, 1.0, n)
    kappa = traits.uniform(1.5, 4.0, n)
    strength = np.where(traits.random(n) < _WEAK_RHYTHM_SHARE, traits.uniform(0.0, 0.3, n),
                        traits.uniform(0.6, 0.95, n))
    favourite = traits.choice(7, size=n, p=_WEEKDAY_WEIGHT)
    move_p = traits.beta(2.0, 3.0, n)
    other = traits.random(n) < _OTHER_ZONE_SHARE
    known = traits.random(n) < _KNOWN_ZONE_SHARE
    move_u = traits.random(o_t.size)

    angle = 2 * np.pi * ((np.arange(24) + 0.5)[None, :] - peak[:, None]) / 24.0
    own = np.exp(kappa[:, None] * (np.cos(angle) - 1.0))
    own /= own.sum(axis=1, keepdims=True)
    shop_p = np.asarray(_HOUR_WEIGHT) / np.sum(_HOUR_WEIGHT)
    cum = np.cumsum(strength[:, None] * own + (1.0 - strength[:, None]) * shop_p[None, :], axis=1)
    cum /= cum[:, -1:]
    cum[:, -1] = 1.0
    flat = (cum + np.arange(n)[:, None]).ravel()
    hour = np.minimum(np.searchsorted(flat, o_cust + u_hour, side="right") - o_cust * 24, 23)

    day = np.floor(o_t).astype(np.int64)
    weekday = (day + t0.day_of_week) % 7
    shift = (favourite[o_cust] - weekday + 3) % 7 - 3  # to the nearest favourite weekday, -3..+3 days
    moved = day + shift
    first_day = np.floor(first_t[o_cust]).astype(np.int64)
    ok = (move_u < move_p[o_cust]) & (o_t != first_t[o_cust]) & (moved >= first_day)
    ok &= (moved < int(horizon)) & (moved >= signup_day[o_cust])
    day = np.where(ok, moved, day)

    seconds = day * 86_400 + hour * 3_600 + second
    away = np.flatnonzero(other[o_cust])
    if away.size:
        wall = pd.DatetimeIndex(t0.value + seconds[away] * 10**9)
        local = wall.tz_localize(OTHER_TIMEZONE, ambiguous=np.zeros(away.size, bool),
                                 nonexistent="shift_forward")
        s = (local.tz_convert(SHOP_TIMEZONE).tz_localize(None).asi8 - t0.value) // 10**9
        s = np.where(s >= horizon * 86_400, s - 86_400, s)  # never past the end: a day earlier
        s = np.where(s < signup_day[o_cust[away]] * 86_400, s + 86_400, s)
        seconds[away] = s
    zone = np.where(other, OTHER_TIMEZONE, np.where(known, SHOP_TIMEZONE, ""))
    return seconds, zone
_MAX_REACTIVATIONS = 2


def _weighted_pick(rng: np.random.Generator, cum: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Sample one column per row of a row-stochastic matrix given as ``cum`` (cumulative rows).

    Offsetting row i's cumulative weights by i turns all rows into one sorted array, so a single
    searchsorted draws for every row at once.
    """
    n_cols = cum.shape[1]
    flat = (cum + np.arange(cum.shape[0])[:, None]).ravel()
    hit = np.searchsorted(flat, rows + rng.random(rows.size), side="right")
    return np.minimum(hit - rows * n_cols, n_cols - 1)


def _row_cumsum(weights: np.ndarray) -> np.ndarray:
    cum = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    cum[:, -1] = 1.0  # exact, so rounding never lets a draw spill into the next row
    return cum


def _product_names(rng: np.random.Generator, counts: np.ndarray) -> list[str]:
    names: list[str] = []
    for spec, count in zip(_CATEGORIES, counts.tolist(), strict=True):
        base = [f"{a} {n}" for a in spec.adjectives for n in spec.nouns]
        base = [base[i] for i in rng.permutation(len(base))]
        for i in range(count):
            name, round_ = base[i % len(base)], i // len(base)
            if round_ == 0:
                names.append(name)
            elif round_ <= len(_VARIANTS):
                names.append(f"{name}, {_VARIANTS[round_ - 1]}")
            else:
                names.append(f"{name} No. {round_ - len(_VARIANTS) + 1}")
    return names


class _Catalogue(NamedTuple):
    products: pd.DataFrame
    category: np.ndarray  # category index per product (products grouped by category)
    price: np.ndarray
    cat_start: np.ndarray  # first product index of each category (+ total at the end)
    pop_flat: np.ndarray  # category index + cumulative within-category popularity
    complements: np.ndarray  # (n_products, 3) product indices
    n_complements: np.ndarray


def _make_catalogue(rng: np.random.Generator, n_products: int) -> _Catalogue:
    n_cat = len(_CATEGORIES)
    if n_products < n_cat:
        raise ValueError(f"n_products must be at least {n_cat} (one per category)")
    # category sizes vary a little; every category gets at least one product
    share = rng.dirichlet(np.full(n_cat, 30.0))
    counts = np.maximum(1, np.floor(share * n_products).astype(np.int64))
    counts[np.argmax(counts)] += n_products - counts.sum()
    category = np.repeat(np.arange(n_cat), counts)
    cat_start = np.concatenate([[0], np.cumsum(counts)])

    median = np.array([c.median_price for c in _CATEGORIES])[category]
    raw_price = median * rng.lognormal(0.0, 0.55, n_products)
    price = np.where(raw_price < 3, np.round(raw_price, 1) + 0.09, np.round(raw_price) - 0.01)
    price = np.maximum(price, 0.49)

    # Zipf-like popularity: a random rank within the category, weight 1/rank^1.1
    rank = np.empty(n_products)
    for c in range(n_cat):
        lo, hi = cat_start[c], cat_start[c + 1]
        rank[lo:hi] = rng.permutation(hi - lo) + 1
    weight = rank**-1.1
    within = np.zeros(n_products)
    for c in range(n_cat):
        lo, hi = cat_start[c], cat_start[c + 1]
        w = np.cumsum(weight[lo:hi])
        within[lo:hi] = w / w[-1]
        within[hi - 1] = 1.0
    pop_flat = category + within

    names = _product_names(rng, counts)
    # ids shuffled so that the id reveals nothing about the category
    width = max(5, len(str(n_products)))
    id_number = rng.permutation(n_products) + 1
    product_id = np.array([f"P{i:0{width}d}" for i in id_number.tolist()], dtype=object)
    cat_names = np.array([c.name for c in _CATEGORIES], dtype=object)

    related: list[list[int]] = [[] for _ in range(n_cat)]
    index = {c.name: i for i, c in enumerate(_CATEGORIES)}
    for a, b in _RELATED:
        related[index[a]].append(index[b])
        related[index[b]].append(index[a])
    related_table = np.full((n_cat, max(len(r) for r in related)), -1)
    for i, r in enumerate(related):
        related_table[i, : len(r)] = r
    n_related = np.array([len(r) for r in related])

    n_complements = rng.integers(1, 4, n_products)
    comp_cat = np.repeat(category[:, None], 3, axis=1)
    cross = rng.random((n_products, 3)) < 0.4
    pick = (rng.random((n_products, 3)) * np.maximum(n_related[comp_cat], 1)).astype(np.int64)
    other = related_table[comp_cat, pick]
    comp_cat = np.where(cross & (other >= 0), other, comp_cat)
    complements = np.searchsorted(pop_flat, comp_cat + rng.random((n_products, 3)), side="right")
    complements = np.minimum(complements, n_products - 1)

    products = pd.DataFrame(
        {
            "product_id": pd.Series(product_id, dtype=STRING_DTYPE),
            "name": pd.Series(names, dtype=STRING_DTYPE),
            "category": pd.Series(cat_names[category], dtype=STRING_DTYPE),
            "price": price.astype("float64"),
        }
    )
    return _Catalogue(products, category, price, cat_start, pop_flat, complements, n_complements)


def _seasonal_clock(start: pd.Timestamp, n_days: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-day rate multiplier and its cumulative sum ("seasonal time" at each day start)."""
    days = pd.date_range(start, periods=n_days, freq="D")
    rate = np.asarray(_SEASON)[days.month.to_numpy() - 1]
    cum = np.concatenate([[0.0], np.cumsum(rate)])
    return rate, cum


def _to_seasonal(t: np.ndarray, rate: np.ndarray, cum: np.ndarray) -> np.ndarray:
    d = np.clip(np.floor(t).astype(np.int64), 0, rate.size - 1)
    return cum[d] + rate[d] * (t - d)


def _from_seasonal(u: np.ndarray, rate: np.ndarray, cum: np.ndarray) -> np.ndarray:
    d = np.clip(np.searchsorted(cum, u, side="right") - 1, 0, rate.size - 1)
    return d + (u - cum[d]) / rate[d]


def generate_shop(
    n_customers: int = 40_000,
    seed: int = 7,
    start: str = "2023-01-01",
    end: str = "2025-12-31",
    n_products: int = 2_000,
    campaigns: bool = True,
) -> Shop:
    """Build a deterministic synthetic shop (same arguments -> identical frames).

    campaigns: also send marketing campaigns with a randomised control group and a known true
    uplift, and apply their effect to the orders (tenure.campaigns.add_campaigns; Shop.campaigns).

    ``end`` is inclusive (orders up to 23:59:59 that day). Defaults give ~1M order lines in a few
    seconds. Behaviour and churn drivers are described in the module docstring.
    """
    if n_customers < 1:
        raise ValueError("n_customers must be positive")
    began = time.perf_counter()
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start).normalize()
    t_end = pd.Timestamp(end).normalize() + pd.Timedelta(days=1)
    horizon = float((t_end - t0) / pd.Timedelta(days=1))
    if horizon < 28:
        raise ValueError("the period from start to end must be at least 4 weeks")

    catalogue = _make_catalogue(rng, n_products)
    n_cat = len(_CATEGORIES)
    cat_index = {c.name: i for i, c in enumerate(_CATEGORIES)}

    # ---- customers -------------------------------------------------------------------------
    n = n_customers
    months = pd.period_range(t0, t_end - pd.Timedelta(days=1), freq="M")
    m = np.arange(len(months))
    # a big early cohort, then steady acquisition every month (new customers near the end too)
    month_w = 1.0 + 3.0 * np.exp(-m / 6.0)
    month = rng.choice(len(months), size=n, p=month_w / month_w.sum())
    month_start = ((months.start_time - t0) / pd.Timedelta(days=1)).to_numpy(dtype=float)
    month_len = months.days_in_month.to_numpy()
    signup_day = np.floor(month_start[month] + rng.random(n) * month_len[month])
    signup_day = np.clip(signup_day, 0, horizon - 1)

    age = np.clip(np.round(rng.normal(42, 14, n)), 18, 80)
    gender = rng.choice(len(_GENDERS), size=n, p=_GENDER_SHARE)
    region = rng.choice(len(_REGIONS), size=n, p=_REGION_SHARE)
    pref_channel = rng.choice(len(_CHANNELS), size=n, p=_CHANNEL_SHARE)
    regular = rng.random(n) < 0.30
    fading = rng.random(n) < 0.25

    # category preferences: Dirichlet around demographic tilts
    log_alpha = np.zeros((n, n_cat))
    for g, cat, tilt in _GENDER_TILT:
        log_alpha[gender == _GENDERS.index(g), cat_index[cat]] += tilt
    for r, cat, tilt in _REGION_TILT:
        log_alpha[region == _REGIONS.index(r), cat_index[cat]] += tilt
    for lo, hi, cat, tilt in _AGE_TILT:
        log_alpha[(age >= lo) & (age <= hi), cat_index[cat]] += tilt
    replenish = np.array([cat_index[c] for c in _REPLENISH])
    log_alpha[np.ix_(regular, replenish)] += 1.0
    alpha = 0.25 * np.exp(log_alpha)
    pref = rng.gamma(alpha) + 1e-9
    pref_cum = _row_cumsum(pref)

    # ---- behaviour traits ------------------------------------------------------------------
    rate = rng.gamma(1.3, 1.0 / (1.3 * 19.0), n)  # orders per (seasonal) day, mean 1/19
    mean_gap = np.clip(1.0 / rate, 2.0, 720.0)
    mean_gap[regular] = np.clip(mean_gap[regular], 10.0, 90.0)
    shape = rng.uniform(3.0, 6.0, n)
    dropout = rng.beta(1.3, 5.0, n)
    # frequent buyers tend to be loyal ones: couples rate and dropout
    dropout *= np.clip((mean_gap / 30.0) ** 0.25, 0.5, 1.8)
    static = (
        np.asarray(_CHANNEL_DROPOUT)[pref_channel]
        * np.asarray(_REGION_DROPOUT)[region]
        * np.where(age < 25, 1.25, np.where(age > 60, 0.8, 1.0))
        * np.where(regular, 0.6, 1.0)
    )
    return_prop = rng.beta(1.0, 10.0, n)
    react_base = rng.beta(2.0, 10.0, n) * np.asarray(_CHANNEL_REACTIVATION)[pref_channel]
    basket = rng.gamma(5.0, 2.9 / 5.0, n)  # mean extra picks per order (before merging repeats)
    loyalty = np.clip(rng.beta(2.0, 3.0, n) + np.where(regular, 0.2, 0.0), 0.0, 0.95)

    # first order: most buy on the signup day, some later, a few never
    first = rng.random(n)
    first_t = signup_day + np.where(first < 0.82, 0.0, rng.exponential(20.0, n))
    buyer = first < 0.93

    # ---- buy-till-you-die simulation, vectorised across customers --------------------------
    season_rate, season_cum = _seasonal_clock(t0, int(horizon) + 800)
    t = first_t.copy()
    k = np.zeros(n, dtype=np.int64)  # orders since (re)activation
    n_react = np.zeros(n, dtype=np.int64)
    n_done = np.zeros(n, dtype=np.int64)  # orders so far, all activations
    burned = np.zeros(n, dtype=bool)  # has had a return: stays more likely to leave
    active = np.flatnonzero(buyer & (t < horizon))
    chunks: list[tuple[np.ndarray, ...]] = []
    while active.size:
        a = active
        size = a.size
        has_return = rng.random(size) < return_prop[a]
        spend = np.where(fading[a], np.maximum(0.75 ** k[a], 0.2), 1.0)
        chunks.append((a, t[a], has_return, spend))
        burned[a] |= has_return
        p = dropout[a] * static[a] * np.where(has_return, 3.0, np.where(burned[a], 1.3, 1.0))
        p = p * np.where(fading[a], 1.0 + 0.4 * k[a], 1.0)
        drop = rng.random(size) < np.minimum(p, 0.95)
        n_done[a] += 1
        # fading customers also slow down: the gap grows with every order
        gap_mean = mean_gap[a] * np.where(fading[a], 1.0 + 0.15 * k[a], 1.0)
        gap = np.where(
            regular[a],
            rng.gamma(shape[a], gap_mean / shape[a]),
            rng.exponential(gap_mean),
        )
        gap = np.maximum(gap, 0.3)
        t_next = _from_seasonal(
            _to_seasonal(t[a], season_rate, season_cum) + gap, season_rate, season_cum
        )
        # loyal (long-history) customers are likelier to come back after a pause
        react_p = np.minimum(react_base[a] * (1.0 + 0.1 * np.minimum(n_done[a], 10)), 0.9)
        react = drop & (n_react[a] < _MAX_REACTIVATIONS) & (rng.random(size) < react_p)
        pause = rng.uniform(180.0, 540.0, size)
        t_next = np.where(react, t[a] + pause, t_next)
        k[a] = np.where(react, 0, k[a] + 1)
        n_react[a] += react
        t[a] = t_next
        active = a[~(drop & ~react) & (t_next < horizon)]

    o_cust = np.concatenate([c[0] for c in chunks])
    o_t = np.concatenate([c[1] for c in chunks])
    o_ret = np.concatenate([c[2] for c in chunks])
    o_spend = np.concatenate([c[3] for c in chunks])
    # clock time: the day from the process (moved towards the customer's favourite weekday), the hour
    # from the customer's own daily rhythm in their local time, then into the shop's time (_clock); the
    # main stream's draws are those the shop-wide rng.choice(24, p=...) made before (one uniform each)
    u_hour = rng.random(o_t.size)
    seconds, zone = _clock(o_cust, o_t, u_hour, rng.integers(0, 3_600, o_t.size), signup_day, first_t,
                           horizon, t0, seed)
    order_sort = np.lexsort((o_cust, seconds))
    o_cust, o_ret, o_spend, seconds = (x[order_sort] for x in (o_cust, o_ret, o_spend, seconds))
    n_orders = o_cust.size
    o_channel = np.where(
        rng.random(n_orders) < 0.75, pref_channel[o_cust], rng.integers(0, len(_CHANNELS), n_orders)
    )

    # ---- basket lines ----------------------------------------------------------------------
    n_lines = 1 + np.minimum(rng.poisson(basket[o_cust] * o_spend), 7)
    line_order = np.repeat(np.arange(n_orders), n_lines)
    starts = np.concatenate([[0], np.cumsum(n_lines)[:-1]])
    pos = np.arange(line_order.size) - starts[line_order]
    l_cust = o_cust[line_order]
    total = line_order.size

    def by_preference(rows: np.ndarray) -> np.ndarray:
        cat = _weighted_pick(rng, pref_cum, rows)
        hit = np.searchsorted(catalogue.pop_flat, cat + rng.random(rows.size), side="right")
        return np.minimum(hit, n_products - 1)

    # favourites: a few products each customer comes back to
    n_fav = rng.integers(2, 7, n)
    favourites = by_preference(np.repeat(np.arange(n), 6)).reshape(n, 6)
    fav_pick = favourites[l_cust, (rng.random(total) * n_fav[l_cust]).astype(np.int64)]
    pref_pick = by_preference(l_cust)
    product = np.where(rng.random(total) < loyalty[l_cust], fav_pick, pref_pick)
    anchor = product[starts[line_order]]
    comp_pick = catalogue.complements[
        anchor, (rng.random(total) * catalogue.n_complements[anchor]).astype(np.int64)
    ]
    product = np.where((pos > 0) & (rng.random(total) < 0.3), comp_pick, product)

    # one line per product and order: repeated picks merge into the first line
    _, first_idx = np.unique(line_order * np.int64(n_products) + product, return_index=True)
    kept = np.sort(first_idx)
    line_order, product, l_cust = line_order[kept], product[kept], l_cust[kept]
    total = line_order.size

    quantity = np.minimum(rng.geometric(0.6, total), 6).astype(np.float64)
    line_spend = o_spend[line_order]
    quantity = np.where(rng.random(total) < (1.0 - line_spend) * 0.6, 1.0, quantity)
    promo = rng.random(total) < np.where(
        o_channel[line_order] == _CHANNELS.index("social"), 0.35, 0.15
    )
    discount = np.where(promo, rng.choice([0.9, 0.85, 0.8, 0.75], total), 1.0)
    amount = np.round(quantity * catalogue.price[product] * discount, 2)

    # ---- returns: one line of each order flagged in the simulation, days later ------------
    line_count = np.bincount(line_order, minlength=n_orders)
    line_start = np.concatenate([[0], np.cumsum(line_count)[:-1]])
    ret_orders = np.flatnonzero(o_ret)
    ret_line = line_start[ret_orders] + (
        rng.random(ret_orders.size) * line_count[ret_orders]
    ).astype(np.int64)
    ret_q = quantity[ret_line]
    partial = (ret_q > 1) & (rng.random(ret_line.size) < 0.3)
    ret_qty = np.where(partial, np.floor(rng.random(ret_line.size) * (ret_q - 1)) + 1, ret_q)
    ret_amount = -np.round(amount[ret_line] * ret_qty / ret_q, 2)
    ret_seconds = (
        seconds[ret_orders]
        + rng.integers(2, 26, ret_line.size) * 86_400
        + rng.integers(-6 * 3_600, 6 * 3_600, ret_line.size)
    )
    in_period = ret_seconds < horizon * 86_400
    ret_line, ret_orders = ret_line[in_period], ret_orders[in_period]
    ret_qty, ret_amount, ret_seconds = (
        ret_qty[in_period],
        ret_amount[in_period],
        ret_seconds[in_period],
    )

    # ---- assemble canonical frames ---------------------------------------------------------
    n_ret = ret_line.size
    all_order = np.concatenate([line_order, ret_orders])
    all_is_ret = np.concatenate([np.zeros(total, bool), np.ones(n_ret, bool)])
    all_seconds = np.concatenate([seconds[line_order], ret_seconds]).astype(np.int64)
    all_product = np.concatenate([product, product[ret_line]])
    all_qty = np.concatenate([quantity, -ret_qty])
    all_amount = np.concatenate([amount, ret_amount])
    # "O..." sorts before "R..." and ids are zero-padded, so (ts, is_return, order number) is
    # the (ts, order_id) order; lexsort is stable, keeping basket order within an order
    final = np.lexsort((all_order, all_is_ret, all_seconds))

    order_width = max(7, len(str(n_orders)))
    order_num = all_order[final]
    is_ret = all_is_ret[final]
    order_id = pd.Series(order_num + 1).astype(STRING_DTYPE).str.zfill(order_width)
    order_id = pd.Series(np.where(is_ret, "RO", "O"), dtype=STRING_DTYPE) + order_id

    cust_width = max(6, len(str(n)))
    customer_ids = pd.Series(np.arange(1, n + 1)).astype(STRING_DTYPE).str.zfill(cust_width)
    customer_ids = "C" + customer_ids
    cat_names = np.array([c.name for c in _CATEGORIES], dtype=object)
    final_product = all_product[final]
    transactions = pd.DataFrame(
        {
            "customer_id": _take_text(customer_ids, o_cust[order_num]),
            "order_id": order_id,
            "ts": pd.Series(t0.value + all_seconds[final] * 10**9).astype("datetime64[ns]"),
            "product_id": _take_text(catalogue.products["product_id"], final_product),
            "quantity": all_qty[final],
            "amount": all_amount[final],
            "is_return": is_ret,
            "category": _take_text(
                pd.Series(cat_names, dtype=STRING_DTYPE), catalogue.category[final_product]
            ),
            "channel": _take_text(pd.Series(_CHANNELS, dtype=STRING_DTYPE), o_channel[order_num]),
        }
    )

    customers = pd.DataFrame(
        {
            "customer_id": customer_ids,
            "signup_date": pd.Series(t0.value + signup_day.astype(np.int64) * _NS_PER_DAY).astype(
                "datetime64[ns]"
            ),
            "age": age.astype("float64"),
            "gender": _take_text(pd.Series(_GENDERS, dtype=STRING_DTYPE), gender),
            "region": _take_text(pd.Series(_REGIONS, dtype=STRING_DTYPE), region),
            "timezone": pd.Series(zone, dtype=STRING_DTYPE),
        }
    )
    # what customers told us in forms (own generator: the rng stream above is unchanged)
    customers = pd.concat([customers, _form_attributes(seed, pref, pref_channel, dropout * static)], axis=1)
    products = catalogue.products.sort_values("product_id", ignore_index=True)

    elapsed = time.perf_counter() - began
    logger.info(
        "synthetic shop seed=%d: %d customers, %d orders, %d lines (%d returns), %s..%s, %.1f s",
        seed, n, n_orders, len(transactions), n_ret, t0.date(),
        (t_end - pd.Timedelta(days=1)).date(), elapsed,
    )  # fmt: skip
    shop = Shop(
        name=f"synthetic-{seed}", transactions=transactions, customers=customers, products=products,
        timezone=SHOP_TIMEZONE,
    )
    if campaigns:  # randomised campaigns with a known true uplift (tenure.campaigns)
        from tenure.campaigns import add_campaigns

        shop = add_campaigns(shop, seed)
    return shop


def _take_text(values: pd.Series, index: np.ndarray) -> pd.Series:
    """``values[index]`` as a fresh string Series (via categorical codes: no per-row Python)."""
    cat = pd.Categorical.from_codes(index, categories=pd.Index(values.to_numpy(dtype=object)))
    return pd.Series(cat).astype(STRING_DTYPE)


_CONSENTS: tuple[tuple[str, float], ...] = (("email", 0.10), ("sms", 0.15), ("push", 0.20))
"""Channels with a consent in the forms and the share of customers refusing each."""
_REFUSE_OWN = 0.05
"""P(refusing the channel one prefers): small, yet some do (the consent rule then changes their best channel)."""


def _form_attributes(seed: int, pref: np.ndarray, pref_channel: np.ndarray, dropout: np.ndarray) -> pd.DataFrame:
    """Zero-party attributes (tenure.attributes columns): household size, declared interests (~40% declare
    1-3 categories drawn from their own category preferences, so they are informative), a newsletter
    choice (weekly likelier for customers with a low dropout propensity `dropout`, "none" for a high one: what
    a real shop's loyal customers tend to do, and a signal the behaviour does not fully show) and consents for email/sms/push (refusals likelier for channels the customer does not prefer).
    Drawn from their own generator, np.random.default_rng([seed, 2029])."""
    rng = np.random.default_rng([seed, 2029])
    n, n_cat = pref.shape
    household = np.clip(rng.poisson(1.4, n) + 1, 1, 6).astype("float64")
    household[rng.random(n) < 0.10] = np.nan  # not given
    # interests: the top 1-3 of a Gumbel-perturbed log preference (= sampling without replacement from pref)
    share = pref / pref.sum(axis=1, keepdims=True)
    keys = np.log(share) + rng.gumbel(size=(n, n_cat))
    top = np.argsort(-keys, axis=1)[:, :3]
    k = 1 + rng.binomial(2, 0.4, n)
    declares = rng.random(n) < 0.40
    names = [c.name for c in _CATEGORIES]
    top_list, k_list, declares_list = top.tolist(), np.asarray(k).tolist(), np.asarray(declares).tolist()
    interests = ["|".join(sorted(names[j] for j in top_list[i][:k_list[i]])) if declares_list[i] else ""
                 for i in range(n)]
    # engaged (loyal) customers subscribe more often: the choice carries a little of the hidden dropout trait
    # (one uniform per customer, as rng.choice(4, p=...) draws, through a per-customer CDF)
    loyal = 1.0 - (np.argsort(np.argsort(dropout)) + 0.5) / n  # 1: least likely to leave
    weights = np.column_stack([np.full(n, 0.20), 0.05 + 0.60 * loyal ** 2, np.full(n, 0.15), 0.65 - 0.60 * loyal ** 2])
    cdf = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    pick = np.minimum((np.asarray(rng.random(n))[:, None] >= cdf).sum(axis=1), 3)
    newsletter = np.array(["", "weekly", "monthly", "none"], dtype=object)[pick]
    out = pd.DataFrame({
        "number:household_size": household,
        "interests:interests": pd.Series(interests, dtype=STRING_DTYPE),
        "text:newsletter": pd.Series(newsletter, dtype=STRING_DTYPE),
    })
    for channel, refuse in _CONSENTS:
        own = pref_channel == _CHANNELS.index(channel)
        share_own = float(own.mean())
        # the other customers refuse more, so that the overall share is `refuse`
        other = min(max((refuse - share_own * _REFUSE_OWN) / max(1.0 - share_own, 1e-9), 0.0), 1.0)
        refused = rng.random(n) < np.where(own, _REFUSE_OWN, other)
        unknown = rng.random(n) < 0.08
        out[f"consent:consent_{channel}:{channel}"] = np.where(unknown, np.nan, np.where(refused, 0.0, 1.0))
    return out
