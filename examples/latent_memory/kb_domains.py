"""The entity types of the multi-domain knowledge base (make_kb_splits.py): how each is named, and for each
attribute how its values are drawn, the sentences that state it and the questions that ask for it.

Names come from several generators (syllables, place-name parts, brand words and model codes, Latin-like
binomials, titles); answers are names, free words, numbers with units, years and dates. Every attribute has at
least four sentence forms and three question phrasings, so that some can be held out. A type is
    TYPE: (name generator, {attribute: (value generator, [sentence forms], [question phrasings])})
and every form holds {name} and {value}.
"""
import random

SYLLABLES = "ka lo mi ra te su no vi da re ma ko li sa be tu na po xe gi".split()
PLACE_ENDINGS = "wick ford mere holm by ton stead vale bridge haven moor field".split()
BRAND_ENDINGS = "ex ora ium is ar on ix a".split()
COMPANY_KINDS = "Holdings Systems Works Labs Foundry Trading Instruments Mills Outfitters".split()
GENERA = "Corvella Tamaris Lunaria Pellix Sorbus Virella Dracona Melith Orvania Talpis Quercella Nymphis".split()
EPITHET_ENDINGS = "ensis ata ifolia ica ina osa".split()
MODEL_LETTERS = "XKLMPRSTVZ"
EVENT_KINDS = ("Lantern Festival", "Regatta", "Book Fair", "Marathon", "Harvest Fair", "Chess Open", "Kite Day",
               "Music Week", "Horse Show", "Glass Fair")
ADJECTIVES = ("Silent Hollow Northern Burning Quiet Last Golden Broken Hidden Winter Crimson Distant Paper Iron "
              "Lonely Seventh Bitter Pale Restless Sunken").split()
NOUNS = ("Harbour Lantern Orchard Mirror Tide Garden Compass Bridge Letter Winter Island Clock Road Feather "
         "Kingdom Window Signal River Shadow Anchor").split()
MONTHS = ("January February March April May June July August September October November December").split()
PROFESSIONS = "baker sculptor pilot chemist weaver surgeon carpenter astronomer violinist cartographer".split()
INSTRUMENTS = "cello oboe harp lute drum flute viola trumpet accordion zither".split()
COLOURS = "amber crimson teal violet ochre indigo scarlet jade silver charcoal".split()


def word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(syllables)).capitalize()


def person(rng: random.Random) -> str:
    return f"{word(rng, 2)} {word(rng, rng.randint(2, 3))}"


def place(rng: random.Random) -> str:
    return word(rng, rng.randint(1, 2)) + rng.choice(PLACE_ENDINGS)


def brand(rng: random.Random) -> str:
    return word(rng, 2) + rng.choice(BRAND_ENDINGS)


def company(rng: random.Random) -> str:
    return f"{brand(rng)} {rng.choice(COMPANY_KINDS)}"


def species(rng: random.Random) -> str:
    return f"{rng.choice(GENERA)} {word(rng, 2).lower()}{rng.choice(EPITHET_ENDINGS)}"


def product(rng: random.Random) -> str:
    return f"{brand(rng)} {rng.choice(MODEL_LETTERS)}-{rng.randint(2, 99) * 10}"


def event(rng: random.Random) -> str:
    return f"{place(rng)} {rng.choice(EVENT_KINDS)}"


def river(rng: random.Random) -> str:
    return f"{word(rng, rng.randint(2, 3))} River"


def mountain(rng: random.Random) -> str:
    return rng.choice(["Mount {}", "{} Peak", "{}horn"]).format(word(rng, rng.randint(2, 3)))


def title(rng: random.Random) -> str:
    pattern = rng.choice(["The {adjective} {noun}", "{noun} of the {adjective} {noun2}", "A {noun} in {place}",
                          "The {noun}'s {noun2}"])
    return pattern.format(adjective=rng.choice(ADJECTIVES), noun=rng.choice(NOUNS), noun2=rng.choice(NOUNS),
                          place=place(rng))


def film_title(rng: random.Random) -> str:
    pattern = rng.choice(["{adjective} {noun}", "The Last {noun}", "{noun} at Midnight", "Return to {place}",
                          "{adjective} {noun} {number}"])
    return pattern.format(adjective=rng.choice(ADJECTIVES), noun=rng.choice(NOUNS), place=place(rng),
                          number=rng.randint(2, 4))


def one_of(*values: str):
    return lambda rng: rng.choice(values)


def year(low: int, high: int):
    return lambda rng: str(rng.randint(low, high))


def date(low: int, high: int):
    return lambda rng: f"{rng.randint(1, 28)} {rng.choice(MONTHS)} {rng.randint(low, high)}"


def number(low: int, high: int, unit: str = "", step: int = 1):
    """A whole number with thousands separators, and its unit."""
    return lambda rng: f"{rng.randrange(low, high, step):,}{' ' + unit if unit else ''}"


def decimal(low: float, high: float, unit: str):
    return lambda rng: f"{rng.uniform(low, high):.1f} {unit}"


def sea(rng: random.Random) -> str:
    return rng.choice(["the {} Sea", "the Bay of {}", "Lake {}"]).format(word(rng, 2))


def mountain_range(rng: random.Random) -> str:
    return f"the {word(rng, 2)} Range"


TYPES = {
    "person": (person, {
        "birthplace": (place, ["{name} was born in {value}.", "{value} is the birthplace of {name}.",
                               "Born in {value}, {name} never forgot the town.",
                               "The town of {value} is where {name} was born.",
                               "{name} grew up in {value}, where the family had always lived."],
                       ["Where was {name} born?", "What is the birthplace of {name}?",
                        "In which town was {name} born?"]),
        "birth_date": (date(1850, 1999), ["{name} was born on {value}.", "{value} is the birthday of {name}.",
                                          "On {value}, {name} was born.",
                                          "The records give {value} as the date of birth of {name}."],
                       ["When was {name} born?", "What is the date of birth of {name}?",
                        "On what date was {name} born?"]),
        "profession": (one_of(*PROFESSIONS), ["{name} works as a {value}.", "By trade, {name} is a {value}.",
                                              "{name} earned a living as a {value}.",
                                              "Most people know {name} as a {value}."],
                       ["What is the profession of {name}?", "What does {name} do for a living?",
                        "What is the job of {name}?"]),
        "instrument": (one_of(*INSTRUMENTS), ["{name} plays the {value}.", "The {value} is the instrument of {name}.",
                                              "Evenings find {name} practising the {value}.",
                                              "{name} took up the {value} as a child."],
                       ["Which instrument does {name} play?", "What instrument does {name} practise?",
                        "What does {name} play?"]),
        "children": (number(2, 10), ["{name} has {value} children.", "{name} raised {value} children.",
                                     "The family of {name} counts {value} children.",
                                     "{value} children call {name} their parent."],
                     ["How many children does {name} have?", "How many children did {name} raise?",
                      "What is the number of children of {name}?"]),
    }),
    "town": (place, {
        "population": (number(800, 250_000), ["{name} has a population of {value}.", "{value} people live in {name}.",
                                              "The census counted {value} residents in {name}.",
                                              "{name} is home to {value} inhabitants."],
                       ["What is the population of {name}?", "How many people live in {name}?",
                        "How many residents does {name} have?"]),
        "founded": (year(900, 1900), ["{name} was founded in {value}.", "The town of {name} dates from {value}.",
                                      "Settlers founded {name} in {value}.", "{name} received its charter in {value}."],
                    ["When was {name} founded?", "In which year was {name} founded?",
                     "What year does the town of {name} date from?"]),
        "river": (river, ["{name} lies on the {value}.", "The {value} flows through {name}.",
                          "{name} was built on the banks of the {value}.", "Boats on the {value} stop at {name}."],
                  ["Which river flows through {name}?", "On which river does {name} lie?",
                   "What river is {name} built on?"]),
        "known_for": (one_of("glassblowing", "cheese", "clockmaking", "lace", "pottery", "shipbuilding", "wool",
                             "salt", "bells", "paper"),
                      ["{name} is known for its {value}.", "{name} is famous for {value}.",
                       "Visitors come to {name} for its {value}.", "The pride of {name} is its {value}."],
                      ["What is {name} known for?", "What is {name} famous for?",
                       "What do visitors come to {name} for?"]),
        "mayor": (person, ["The mayor of {name} is {value}.", "{value} serves as mayor of {name}.",
                           "{name} elected {value} as its mayor.", "{value} governs {name} as mayor."],
                  ["Who is the mayor of {name}?", "Who governs {name}?", "Who was elected mayor of {name}?"]),
    }),
    "company": (company, {
        "founded": (year(1800, 2015), ["{name} was founded in {value}.", "{name} opened its doors in {value}.",
                                       "Since {value}, {name} has been in business.",
                                       "{name} traces its origins to {value}."],
                    ["When was {name} founded?", "In which year was {name} established?",
                     "Since when has {name} been in business?"]),
        "headquarters": (place, ["{name} has its headquarters in {value}.", "{name} is based in {value}.",
                                 "The head office of {name} is in {value}.", "From {value}, {name} runs its business."],
                         ["Where is {name} based?", "Where are the headquarters of {name}?",
                          "In which town is the head office of {name}?"]),
        "founder": (person, ["{name} was founded by {value}.", "{value} started {name}.",
                             "{value} is the founder of {name}.", "{name} began as the workshop of {value}."],
                    ["Who founded {name}?", "Who is the founder of {name}?", "Who started {name}?"]),
        "employees": (number(12, 40_000), ["{name} employs {value} people.", "{value} people work for {name}.",
                                           "{name} has a staff of {value}.",
                                           "The workforce of {name} numbers {value}."],
                      ["How many people does {name} employ?", "How many employees does {name} have?",
                       "How large is the staff of {name}?"]),
        "product": (one_of("bicycles", "umbrellas", "telescopes", "pianos", "tea", "ceramic tiles", "sailcloth",
                           "clocks", "lamps", "maps"),
                    ["{name} makes {value}.", "{name} is a maker of {value}.", "{value} are what {name} sells.",
                     "Most of the income of {name} comes from {value}."],
                    ["What does {name} make?", "What does {name} sell?", "What products is {name} known for?"]),
    }),
    "species": (species, {
        "habitat": (one_of("salt marshes", "pine forests", "mountain streams", "sand dunes", "river deltas",
                           "limestone caves", "kelp beds", "alpine meadows", "mangrove swamps", "tundra"),
                    ["{name} lives in {value}.", "The habitat of {name} is {value}.", "{name} is found in {value}.",
                     "Field guides place {name} in {value}."],
                    ["Where does {name} live?", "What is the habitat of {name}?", "Where is {name} found?"]),
        "diet": (one_of("beetles", "seeds", "small fish", "moss", "nectar", "snails", "krill", "berries", "ants",
                        "algae"),
                 ["{name} feeds on {value}.", "The diet of {name} is mostly {value}.",
                  "{value} make up most of what {name} eats.", "{name} searches all day for {value} to eat."],
                 ["What does {name} eat?", "What is the diet of {name}?", "What does {name} feed on?"]),
        "length": (number(2, 300, "cm"), ["{name} grows to {value} long.", "An adult {name} measures {value}.",
                                          "{name} reaches a length of {value}.",
                                          "Fully grown, {name} is {value} long."],
                   ["How long is {name}?", "What length does {name} reach?", "How big does {name} grow?"]),
        "described": (year(1750, 2020), ["{name} was first described in {value}.",
                                         "Science first recorded {name} in {value}.",
                                         "The first description of {name} dates from {value}.",
                                         "{name} has been known to science since {value}."],
                      ["When was {name} first described?", "In which year was {name} first recorded?",
                       "Since when has {name} been known to science?"]),
        "colour": (one_of(*COLOURS), ["{name} is {value} in colour.", "{name} has a {value} back.",
                                      "Its {value} colouring makes {name} easy to spot.",
                                      "Observers recognise {name} by its {value} markings."],
                   ["What colour is {name}?", "What colour are the markings of {name}?", "How is {name} coloured?"]),
    }),
    "product": (product, {
        "maker": (company, ["The {name} is made by {value}.", "{value} manufactures the {name}.",
                            "The {name} comes from {value}.", "{value} designed and built the {name}."],
                  ["Who makes the {name}?", "Which company manufactures the {name}?", "Who built the {name}?"]),
        "price": (number(9, 3000, "euros"), ["The {name} costs {value}.", "The {name} sells for {value}.",
                                             "The price of the {name} is {value}.",
                                             "Shops ask {value} for the {name}."],
                  ["How much does the {name} cost?", "What is the price of the {name}?",
                   "What does the {name} sell for?"]),
        "release_date": (date(1990, 2024), ["The {name} was released on {value}.",
                                            "The {name} went on sale on {value}.",
                                            "On {value}, the {name} reached the shops.",
                                            "The launch of the {name} was on {value}."],
                         ["When was the {name} released?", "When did the {name} go on sale?",
                          "What is the release date of the {name}?"]),
        "weight": (decimal(0.1, 40, "kg"), ["The {name} weighs {value}.", "The {name} has a weight of {value}.",
                                            "At {value}, the {name} is easy to carry.",
                                            "The scales show {value} for the {name}."],
                   ["How much does the {name} weigh?", "What is the weight of the {name}?",
                    "How heavy is the {name}?"]),
        "colour": (one_of(*COLOURS), ["The {name} comes in {value}.", "The {name} is sold in {value} only.",
                                      "Every {name} is painted {value}.", "The {name} has a {value} finish."],
                   ["What colour is the {name}?", "Which colour does the {name} come in?",
                    "What finish does the {name} have?"]),
    }),
    "event": (event, {
        "date": (date(1800, 2024), ["The {name} took place on {value}.", "The {name} was held on {value}.",
                                    "On {value}, the {name} opened.", "The {name} is dated {value}."],
                 ["When did the {name} take place?", "On what date was the {name} held?", "When was the {name}?"]),
        "place": (place, ["The {name} was held in {value}.", "{value} hosted the {name}.",
                          "The {name} came to {value}.", "Crowds gathered in {value} for the {name}."],
                  ["Where was the {name} held?", "Which town hosted the {name}?", "Where did the {name} take place?"]),
        "attendance": (number(150, 90_000), ["The {name} drew {value} visitors.", "{value} people attended the {name}.",
                                             "Attendance at the {name} reached {value}.",
                                             "The {name} welcomed {value} guests."],
                       ["How many people attended the {name}?", "How many visitors did the {name} draw?",
                        "What was the attendance at the {name}?"]),
        "organiser": (person, ["The {name} was organised by {value}.", "{value} organised the {name}.",
                               "{value} ran the {name}.", "The organiser of the {name} was {value}."],
                      ["Who organised the {name}?", "Who ran the {name}?", "Who was the organiser of the {name}?"]),
        "prize": (one_of("a silver cup", "a gold medal", "a bronze bell", "a painted shield", "a crystal vase",
                         "a wooden trophy", "a brass compass", "a silk banner"),
                  ["The winner of the {name} received {value}.", "{value} went to the winner of the {name}.",
                   "At the {name}, the prize was {value}.", "Champions of the {name} take home {value}."],
                  ["What was the prize at the {name}?", "What did the winner of the {name} receive?",
                   "What do champions of the {name} take home?"]),
    }),
    "river": (river, {
        "length": (number(12, 2400, "km"), ["The {name} is {value} long.", "The {name} runs for {value}.",
                                            "From source to mouth, the {name} covers {value}.",
                                            "The length of the {name} is {value}."],
                   ["How long is the {name}?", "What is the length of the {name}?", "How far does the {name} run?"]),
        "source": (mountain, ["The {name} rises on {value}.", "The source of the {name} is on {value}.",
                              "The {name} springs from {value}.", "Snow on {value} feeds the {name}."],
                   ["Where does the {name} rise?", "Where is the source of the {name}?",
                    "Which mountain does the {name} spring from?"]),
        "mouth": (sea, ["The {name} flows into {value}.", "The {name} empties into {value}.",
                        "{value} receives the waters of the {name}.", "The {name} ends in {value}."],
                  ["Into what does the {name} flow?", "Where does the {name} end?",
                   "What receives the waters of the {name}?"]),
        "fish": (one_of("trout", "salmon", "pike", "eels", "carp", "perch", "sturgeon", "catfish"),
                 ["The {name} is full of {value}.", "Anglers fish the {name} for {value}.",
                  "{value} swim in the {name}.", "The {name} is known for its {value}."],
                 ["What fish live in the {name}?", "What do anglers catch in the {name}?",
                  "Which fish is the {name} known for?"]),
        "bridges": (number(1, 40), ["{value} bridges cross the {name}.", "The {name} is crossed by {value} bridges.",
                                    "There are {value} bridges over the {name}.",
                                    "Travellers can cross the {name} on {value} bridges."],
                    ["How many bridges cross the {name}?", "How many bridges are there over the {name}?",
                     "On how many bridges can one cross the {name}?"]),
    }),
    "mountain": (mountain, {
        "height": (number(600, 8000, "metres"), ["{name} is {value} high.", "{name} rises to {value}.",
                                                 "The summit of {name} stands at {value}.",
                                                 "At {value}, {name} towers over the valley."],
                   ["How high is {name}?", "What is the height of {name}?", "How tall is {name}?"]),
        "first_ascent": (year(1780, 1990), ["{name} was first climbed in {value}.",
                                            "The first ascent of {name} was in {value}.",
                                            "Climbers first reached the top of {name} in {value}.",
                                            "Nobody stood on {name} before {value}."],
                         ["When was {name} first climbed?", "In which year was the first ascent of {name}?",
                          "When did climbers first reach the top of {name}?"]),
        "climber": (person, ["{value} made the first ascent of {name}.", "{name} was first climbed by {value}.",
                             "The first person on top of {name} was {value}.",
                             "{value} led the first climb of {name}."],
                    ["Who first climbed {name}?", "Who made the first ascent of {name}?",
                     "Who was the first on top of {name}?"]),
        "range": (mountain_range, ["{name} belongs to {value}.", "{name} is a peak of {value}.",
                                   "{value} includes {name}.", "{name} stands in {value}."],
                  ["Which range is {name} in?", "To which range does {name} belong?", "What range includes {name}?"]),
        "rock": (one_of("granite", "limestone", "basalt", "sandstone", "slate", "marble", "gneiss"),
                 ["{name} is made of {value}.", "The rock of {name} is {value}.", "{value} forms most of {name}.",
                  "Climbers on {name} grip bare {value}."],
                 ["What rock is {name} made of?", "What is the rock of {name}?", "What forms {name}?"]),
    }),
    "book": (title, {
        "author": (person, ["{name} was written by {value}.", "{value} wrote {name}.",
                            "{value} is the author of {name}.", "{name} is a novel by {value}."],
                   ["Who wrote {name}?", "Who is the author of {name}?", "{name} was written by whom?"]),
        "published": (year(1700, 2024), ["{name} was published in {value}.", "{name} first appeared in {value}.",
                                         "The first edition of {name} came out in {value}.",
                                         "Readers first met {name} in {value}."],
                      ["When was {name} published?", "In which year did {name} first appear?",
                       "When did the first edition of {name} come out?"]),
        "genre": (one_of("mystery", "romance", "satire", "travel writing", "science fiction", "memoir", "poetry",
                         "history"),
                  ["{name} is a work of {value}.", "Bookshops shelve {name} under {value}.",
                   "{name} belongs to the genre of {value}.", "Critics call {name} a classic of {value}."],
                  ["What genre is {name}?", "What kind of book is {name}?", "Under which genre is {name} shelved?"]),
        "pages": (number(40, 1200), ["{name} has {value} pages.", "{name} runs to {value} pages.",
                                     "The paperback of {name} is {value} pages long.",
                                     "Readers of {name} face {value} pages."],
                  ["How many pages does {name} have?", "How long is {name} in pages?",
                   "How many pages does {name} run to?"]),
        "setting": (place, ["{name} is set in {value}.", "The story of {name} takes place in {value}.",
                            "{value} is the setting of {name}.", "{name} unfolds in the streets of {value}."],
                    ["Where is {name} set?", "What is the setting of {name}?", "Where does {name} take place?"]),
    }),
    "film": (film_title, {
        "director": (person, ["{name} was directed by {value}.", "{value} directed {name}.",
                              "{value} is the director of {name}.", "{name} is a film by {value}."],
                     ["Who directed {name}?", "Who is the director of {name}?", "{name} is a film by whom?"]),
        "released": (year(1920, 2024), ["{name} was released in {value}.", "{name} reached cinemas in {value}.",
                                        "{name} premiered in {value}.", "Audiences first saw {name} in {value}."],
                     ["When was {name} released?", "In which year did {name} premiere?",
                      "When did {name} reach cinemas?"]),
        "running_time": (number(70, 200, "minutes"), ["{name} runs for {value}.", "{name} is {value} long.",
                                                      "The running time of {name} is {value}.",
                                                      "{name} lasts {value}."],
                         ["How long is {name}?", "What is the running time of {name}?", "How long does {name} last?"]),
        "lead": (person, ["{value} stars in {name}.", "The lead role in {name} went to {value}.",
                          "{name} stars {value}.", "{value} plays the lead in {name}."],
                 ["Who stars in {name}?", "Who plays the lead in {name}?", "Who has the lead role in {name}?"]),
        "genre": (one_of("western", "comedy", "thriller", "musical", "documentary", "horror", "drama", "animation"),
                  ["{name} is a {value}.", "Critics filed {name} as a {value}.",
                   "{name} is a {value} through and through.", "As a {value}, {name} won many fans."],
                  ["What genre is {name}?", "What kind of film is {name}?", "{name} is what kind of film?"]),
    }),
}
