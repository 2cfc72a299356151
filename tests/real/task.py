"""The real-model task: answer briefly, with substance.

SmolLM2-135M-Instruct knows a fair amount but rambles: asked "Who wrote Hamlet?" it writes a
paragraph and runs out of tokens mid-sentence. The task teaches it to answer in one short
sentence and stop.

- **Training prompts** are factual questions ("Who wrote Hamlet?", "What is photosynthesis?").
  The preferred answer is a concise, correct sentence written here; the dispreferred one is
  the base model's own greedy answer (generated once per session, see ``conftest.py``), kept
  only where that answer fails the gold criterion below.
- **Held-out prompts** are of another kind: practical instructions and requests for advice
  ("How do I boil an egg?", "Give me a tip for sleeping better."). No training prompt asks for
  advice, so a gain on them means the model learned *how* to answer, not *what*.
- **Development prompts** (``DEV``) are more advice requests, none of them held out: settings
  are chosen on them (``python -m tests.real.ppo_dev``), and the held-out prompts are scored
  once, with the settings chosen.

The gold measure is computed by code, per answer, and cannot be gamed by saying nothing:

    substance: at least 3 words, no repeated word 3-gram, no refusal ("I'm not sure", "I
               can't"), and at least one of the prompt's topic words that the prompt itself
               does not contain (prefix match: "minute" matches "minutes"): an answer must
               add something to the question, not echo it                 else gold 0
    finished:  the answer ended (EOS) within the token budget             else gold 0
    brevity:   1.0 up to 25 words, falling linearly to 0 at 60 words

    gold     = substance x finished x brevity, averaged over the held-out prompts (in [0, 1])
    accuracy = share of answers with gold 1.0 that are one paragraph ending in . ! or ?

Everything here is plain data and pure functions: no model, no network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Concise, correct answers to factual questions: the "chosen" side of every training pair.
FACTS: tuple[tuple[str, str], ...] = (
    ("Who wrote Hamlet?", "William Shakespeare wrote Hamlet around 1600."),
    ("What is photosynthesis?",
     "Photosynthesis is how plants use sunlight to turn water and carbon dioxide into sugar "
     "and oxygen."),
    ("Who was Albert Einstein?",
     "Albert Einstein was a German-born physicist best known for the theory of relativity."),
    ("What is gravity?", "Gravity is the force that pulls objects with mass toward each other."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa."),
    ("What is a black hole?",
     "A black hole is a region of space where gravity is so strong that not even light "
     "escapes."),
    ("Who was Marie Curie?",
     "Marie Curie was a physicist and chemist who pioneered research on radioactivity."),
    ("What is DNA?", "DNA is the molecule that carries the genetic instructions of living "
     "things."),
    ("Why is the sky blue?",
     "Air scatters blue sunlight more than red light, so the sky looks blue."),
    ("What is the Great Wall of China?",
     "The Great Wall is a long chain of fortifications built across northern China."),
    ("Who was Isaac Newton?",
     "Isaac Newton was an English scientist who described gravity and the laws of motion."),
    ("What is a volcano?",
     "A volcano is an opening in the Earth's crust where molten rock, ash and gas escape."),
    ("What is the speed of light?",
     "Light travels at about 300,000 kilometres per second in a vacuum."),
    ("Who invented the telephone?",
     "Alexander Graham Bell is credited with inventing the telephone in 1876."),
    ("What is democracy?",
     "Democracy is a system of government in which citizens choose their leaders by voting."),
    ("What is an atom?", "An atom is the smallest unit of a chemical element."),
    ("Who was Cleopatra?", "Cleopatra was the last active ruler of ancient Egypt's Ptolemaic "
     "kingdom."),
    ("What is climate change?",
     "Climate change is the long-term warming of the planet, driven mostly by burning fossil "
     "fuels."),
    ("What is the Moon?", "The Moon is Earth's only natural satellite."),
    ("Who was Mahatma Gandhi?",
     "Mahatma Gandhi led India's nonviolent independence movement against British rule."),
    ("What is a computer?",
     "A computer is a machine that stores and processes information by following "
     "instructions."),
    ("What causes rain?",
     "Rain falls when water vapour in clouds condenses into drops heavy enough to fall."),
    ("Who wrote Pride and Prejudice?", "Jane Austen wrote Pride and Prejudice, published in "
     "1813."),
    ("What is the Internet?",
     "The Internet is a global network that connects computers so they can share "
     "information."),
    ("What is an earthquake?",
     "An earthquake is a sudden shaking of the ground caused by moving rock along a fault."),
    ("Who was Napoleon Bonaparte?",
     "Napoleon Bonaparte was a French military leader who became Emperor of France."),
    ("What is evolution?",
     "Evolution is the change in living things over generations through natural selection."),
    ("What is the Amazon rainforest?",
     "The Amazon is the world's largest tropical rainforest, mostly in Brazil."),
    ("What is a virus?",
     "A virus is a tiny infectious agent that can only multiply inside living cells."),
    ("Who was Leonardo da Vinci?",
     "Leonardo da Vinci was an Italian Renaissance painter, inventor and scientist."),
    ("What is electricity?", "Electricity is the flow of electric charge, usually electrons, "
     "through a conductor."),
    ("Why do leaves change colour in autumn?",
     "Leaves change colour when trees stop making green chlorophyll and other pigments show."),
    ("What is the Sun?", "The Sun is the star at the centre of our solar system."),
    ("Who was Martin Luther King Jr.?",
     "Martin Luther King Jr. was an American civil rights leader who championed "
     "nonviolence."),
    ("What is a rainbow?",
     "A rainbow is an arc of colours made when sunlight is bent and reflected by raindrops."),
    ("What is inflation?", "Inflation is the general rise in prices over time, which lowers "
     "what money can buy."),
    ("Who discovered penicillin?", "Alexander Fleming discovered penicillin in 1928."),
    ("What is the ocean made of?",
     "The ocean is salt water, mostly water with dissolved salts such as sodium chloride."),
    ("What is a planet?", "A planet is a large body that orbits a star and has cleared its "
     "orbit."),
    ("Who was William Shakespeare?",
     "William Shakespeare was an English playwright and poet, author of Hamlet and Macbeth."),
    ("What is the heart?",
     "The heart is the muscle that pumps blood through the body."),
    ("What is oxygen?",
     "Oxygen is a gas that makes up about a fifth of the air and that we need to breathe."),
    ("Why do we have seasons?",
     "We have seasons because the Earth's axis is tilted as it orbits the Sun."),
    ("What is a dinosaur?",
     "Dinosaurs were reptiles that dominated life on land for over 160 million years."),
    ("Who was Charles Darwin?",
     "Charles Darwin was an English naturalist who proposed the theory of evolution by natural "
     "selection."),
    ("What is the Eiffel Tower?",
     "The Eiffel Tower is an iron tower in Paris, completed in 1889."),
    ("What is a galaxy?",
     "A galaxy is a huge system of stars, gas and dust held together by gravity."),
    ("What is money?", "Money is anything widely accepted in exchange for goods and services."),
    ("Who was Julius Caesar?",
     "Julius Caesar was a Roman general and statesman who became dictator of Rome."),
    ("What is a desert?", "A desert is a region that receives very little rain."),
    ("What is the brain?",
     "The brain is the organ that controls thought, memory, movement and the senses."),
    ("Who was Wolfgang Amadeus Mozart?",
     "Mozart was an Austrian composer of the Classical era who wrote over 600 works."),
    ("What is a tsunami?",
     "A tsunami is a series of large ocean waves usually caused by an undersea earthquake."),
    ("What is plastic?",
     "Plastic is a material made from long chains of molecules, usually derived from oil."),
    ("What is the Milky Way?",
     "The Milky Way is the galaxy that contains our solar system."),
    ("Who was Abraham Lincoln?",
     "Abraham Lincoln was the 16th president of the United States and ended slavery."),
    ("What is a glacier?", "A glacier is a large, slowly moving mass of ice on land."),
    ("What is nuclear energy?",
     "Nuclear energy is the energy released by splitting or fusing atomic nuclei."),
    ("What is a language?",
     "A language is a system of words and rules that people use to communicate."),
    ("Why is the sea salty?",
     "The sea is salty because rivers carry dissolved minerals from rocks into it."),
    ("What is chocolate made from?",
     "Chocolate is made from roasted cacao beans, usually with sugar and milk."),
    ("Who was Galileo Galilei?",
     "Galileo was an Italian astronomer who improved the telescope and studied the planets."),
    ("What is a vaccine?",
     "A vaccine trains the immune system to recognise and fight a disease."),
    ("What is the Pacific Ocean?",
     "The Pacific is the largest and deepest ocean on Earth."),
)


@dataclass(frozen=True)
class HeldOut:
    """An advice prompt, the words that show an answer is about it, and a concise answer."""

    prompt: str
    keywords: tuple[str, ...]
    answer: str  # a reference answer with gold 1.0 (the chosen side of held-out RM pairs)


HELD_OUT: tuple[HeldOut, ...] = (
    HeldOut("How do I make a cup of tea?", ("tea", "water", "kettle", "steep", "boil", "cup",
                                            "mug", "bag", "leaves"),
            "Pour boiling water over a tea bag in a cup and let it steep for three minutes."),
    HeldOut("Give me a tip for sleeping better.", ("sleep", "bed", "night", "rest", "screen",
                                                   "caffeine", "dark", "routine", "nap"),
            "Go to bed and wake up at the same time every day."),
    HeldOut("How can I save money?", ("money", "sav", "budget", "spend", "buy", "cost",
                                      "expens", "bill", "bank"),
            "Make a monthly budget and put part of every paycheck into savings first."),
    HeldOut("Give me a tip for learning a language.", ("language", "word", "speak", "practi",
                                                       "read", "listen", "vocabular",
                                                       "native", "learn"),
            "Practise speaking with native speakers for a few minutes every day."),
    HeldOut("How do I boil an egg?", ("egg", "boil", "water", "minute", "pot", "pan", "shell"),
            "Put the egg in boiling water for nine minutes, then cool it in cold water."),
    HeldOut("How do I keep my houseplants alive?", ("plant", "water", "light", "sun", "soil",
                                                    "pot", "leaves"),
            "Water them when the soil feels dry and give them bright, indirect light."),
    HeldOut("Give me a tip for a job interview.", ("interview", "job", "prepar", "research",
                                                   "question", "compan", "answer", "dress",
                                                   "employer"),
            "Research the company and prepare short stories that show your skills."),
    HeldOut("How do I stay focused while studying?", ("focus", "stud", "break", "phone",
                                                      "distract", "quiet", "timer", "task",
                                                      "concentrat"),
            "Put your phone in another room and study in 25-minute blocks with short breaks."),
    HeldOut("How can I drink more water?", ("water", "drink", "bottle", "glass", "hydrat",
                                            "thirst", "cup"),
            "Carry a refillable water bottle and drink a glass with every meal."),
    HeldOut("Give me a tip for running my first 5K.", ("run", "pace", "train", "5k", "race",
                                                       "slow", "walk", "breath", "mile"),
            "Start at a slow, comfortable pace and save your energy for the last kilometre."),
    HeldOut("How do I clean a cast iron pan?", ("pan", "iron", "water", "scrub", "oil", "soap",
                                                "dry", "salt", "clean", "rinse"),
            "Scrub it with hot water and a brush, dry it well, and rub in a little oil."),
    HeldOut("How can I be more productive in the morning?", ("morning", "wake", "plan", "task",
                                                             "early", "routine", "breakfast",
                                                             "list", "productiv"),
            "Plan your three most important tasks the night before and start with the hardest."),
    HeldOut("Give me a tip for public speaking.", ("speak", "practi", "audience", "speech",
                                                   "slow", "breath", "talk", "rehears"),
            "Rehearse your talk out loud several times and speak slowly."),
    HeldOut("How do I remember people's names?", ("name", "repeat", "remember", "memor",
                                                  "person", "people", "associat", "say"),
            "Repeat the person's name out loud right after you hear it."),
    HeldOut("How can I reduce stress after work?", ("stress", "relax", "walk", "exercis",
                                                    "breath", "work", "music", "hobby",
                                                    "rest", "calm"),
            "Take a short walk outside to clear your head before you do anything else."),
    HeldOut("Give me a tip for writing a good email.", ("email", "subject", "short", "clear",
                                                        "brief", "concise", "write",
                                                        "point", "read"),
            "Put your main request in the first sentence and keep the email short."),
    HeldOut("How do I cook rice?", ("rice", "water", "boil", "cook", "simmer", "pot", "cup",
                                    "minute", "rins"),
            "Simmer one cup of rice in two cups of water, covered, for about 18 minutes."),
    HeldOut("How can I make friends in a new city?", ("friend", "club", "join", "meet", "group",
                                                      "people", "class", "volunteer",
                                                      "event", "social"),
            "Join a club or class built around a hobby you enjoy and go every week."),
    HeldOut("Give me a tip for saving energy at home.", ("energy", "light", "turn", "off",
                                                         "heat", "insulat", "appliance",
                                                         "thermostat", "bulb", "power"),
            "Switch to LED bulbs and turn off lights when you leave a room."),
    HeldOut("How do I start exercising?", ("exercis", "walk", "start", "workout", "minute",
                                           "routine", "slow", "gym", "activ", "run"),
            "Start with a 20-minute walk three times a week and build up slowly."),
    HeldOut("Suggest a healthy snack.", ("snack", "fruit", "apple", "nut", "yogurt", "banana",
                                         "carrot", "vegetable", "almond", "healthy"),
            "A handful of almonds with an apple makes a filling, healthy snack."),
    HeldOut("How do I write a to-do list?", ("list", "task", "write", "prioriti", "item",
                                             "important", "do", "order"),
            "Write down every task, then put the three most important ones at the top."),
    HeldOut("Give me a tip for keeping my desk tidy.", ("desk", "tidy", "clean", "clear",
                                                        "drawer", "organi", "clutter",
                                                        "minute", "day", "put"),
            "Spend two minutes clearing your desk at the end of every day."),
    HeldOut("How can I read more books?", ("read", "book", "page", "minute", "day", "library",
                                           "time", "habit", "bed"),
            "Read for twenty minutes every night before bed."),
)

# Development prompts: advice requests of the same kind as HELD_OUT, for choosing settings
# (learning rates, KL coefficients, step counts). A run's settings are tuned on DEV and its
# gain is reported on HELD_OUT once, so that the held-out number is not a tuned one.
DEV: tuple[HeldOut, ...] = (
    HeldOut("How do I make toast?", ("bread", "toaster", "slice", "butter", "minute", "brown",
                                     "heat", "pan"),
            "Put a slice of bread in the toaster for two minutes, then spread butter on it."),
    HeldOut("Give me a tip for waking up early.", ("alarm", "bed", "sleep", "night", "light",
                                                  "routine", "clock", "morning"),
            "Go to bed at the same time every night and put your alarm across the room."),
    HeldOut("How can I eat more vegetables?", ("salad", "soup", "meal", "snack", "cook", "add",
                                              "plate", "fruit", "carrot", "raw"),
            "Add a handful of vegetables to every meal, for example in soups and salads."),
    HeldOut("How do I wash a wool sweater?", ("cold", "water", "hand", "soap", "detergent",
                                             "dry", "flat", "gentle", "rins"),
            "Hand wash it in cold water with a mild soap and dry it flat."),
    HeldOut("Give me a tip for studying for an exam.", ("note", "practi", "review", "test",
                                                       "break", "schedule", "question",
                                                       "sleep", "read"),
            "Test yourself with practice questions instead of rereading your notes."),
    HeldOut("How can I sleep on a long flight?", ("pillow", "mask", "ear", "seat", "window",
                                                 "blanket", "caffeine", "music", "rest"),
            "Bring a neck pillow and an eye mask, and pick a window seat."),
    HeldOut("How do I make a paper airplane?", ("fold", "paper", "sheet", "wing", "crease",
                                               "nose", "half", "edge"),
            "Fold a sheet of paper in half, fold the corners to a point, then fold the wings."),
    HeldOut("Give me a tip for saving water at home.", ("shower", "tap", "leak", "toilet",
                                                       "short", "turn", "off", "fix",
                                                       "dishwasher"),
            "Take shorter showers and turn off the tap while you brush your teeth."),
    HeldOut("How can I improve my handwriting?", ("practi", "slow", "letter", "pen", "grip",
                                                 "write", "copy", "paper"),
            "Write slowly and practise one letter shape at a time every day."),
    HeldOut("How do I keep bread fresh?", ("bag", "freez", "wrap", "box", "cool", "dry",
                                          "cloth", "paper", "store", "air"),
            "Keep it in a paper bag at room temperature, or slice and freeze it."),
    HeldOut("Give me a tip for cooking pasta.", ("water", "salt", "boil", "pot", "minute",
                                                "stir", "al", "dente", "sauce"),
            "Cook it in plenty of salted boiling water and stir it in the first minute."),
    HeldOut("How can I stop procrastinating?", ("task", "start", "minute", "small", "timer",
                                               "goal", "phone", "step", "list", "break"),
            "Start with a small task and work on it for just five minutes."),
    HeldOut("How do I calm down before a test?", ("breath", "relax", "prepar", "sleep",
                                                 "slow", "calm", "deep", "confiden"),
            "Take a few slow, deep breaths and remind yourself that you prepared."),
    HeldOut("Give me a tip for painting a room.", ("tape", "roller", "brush", "coat", "wall",
                                                  "primer", "dry", "edge", "cover"),
            "Tape the edges, use a roller, and let each coat dry before the next."),
    HeldOut("How can I be kinder to myself?", ("self", "yourself", "friend", "mistake",
                                              "forgiv", "rest", "talk", "gentle", "praise"),
            "Talk to yourself the way you would talk to a good friend."),
    HeldOut("How do I care for a cat?", ("food", "water", "litter", "vet", "play", "brush",
                                        "feed", "fresh", "clean"),
            "Give it fresh food and water every day and keep its litter box clean."),
)

MIN_WORDS, FULL_WORDS, ZERO_WORDS = 3, 25, 60
# An answer that declines is not an answer (a DPO run without --rpo-alpha learned to say
# "I'm not sure how to help." to everything: short, on topic by the prompt's words, empty).
REFUSALS = ("not sure", "can't", "cannot", "don't know", "unable to", "i am not", "i'm not")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    """Lowercase words and numbers of ``text`` (apostrophes kept inside words)."""
    return _WORD.findall(text.lower())


def repeats_ngram(ws: list[str], n: int = 3) -> bool:
    """True when some word n-gram occurs twice (the loop of a model that cannot stop)."""
    grams = [tuple(ws[i:i + n]) for i in range(len(ws) - n + 1)]
    return len(grams) != len(set(grams))


def has_substance(text: str, keywords: tuple[str, ...] | None = None,
                  prompt: str | None = None) -> bool:
    """At least MIN_WORDS words, no repeated 3-gram, no refusal, and (when given) a topic word
    that ``prompt`` (when given) does not already contain."""
    ws = words(text)
    if len(ws) < MIN_WORDS or repeats_ngram(ws) or any(r in text.lower() for r in REFUSALS):
        return False
    if keywords is None:
        return True
    asked = words(prompt or "")
    new = [k for k in keywords if not any(a.startswith(k) for a in asked)]
    return any(w.startswith(k) for w in ws for k in new)


def brevity(n_words: int) -> float:
    """1.0 up to FULL_WORDS words, linearly down to 0 at ZERO_WORDS."""
    if n_words <= FULL_WORDS:
        return 1.0
    return max(0.0, (ZERO_WORDS - n_words) / (ZERO_WORDS - FULL_WORDS))


def gold(text: str, ended: bool, keywords: tuple[str, ...] | None = None,
         prompt: str | None = None) -> float:
    """The gold score of one answer (see the module docstring), in [0, 1]."""
    if not ended or not has_substance(text, keywords, prompt):
        return 0.0
    return brevity(len(words(text)))


def concise(text: str, ended: bool, keywords: tuple[str, ...] | None = None,
            prompt: str | None = None) -> bool:
    """Meets the gold criterion: gold 1.0, one paragraph, ends with . ! or ?"""
    t = text.strip()
    return gold(t, ended, keywords, prompt) == 1.0 and "\n" not in t and t[-1:] in ".!?"


def chat(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]
