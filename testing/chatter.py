"""Long, realistic, deterministic assistant replies for the fakes.

A real assistant answers a one-line question with a few hundred words of
friendly, structured advice. Memory has to cope with that: the user's short
personal remark ends up in one memory with a long reply beside it. The fake
upstreams answer with :func:`long_reply` when asked (model ``long-<words>``,
e.g. ``long-300``, on :class:`testing.fake_openai.FakeOpenAI`).

The reply restates the user's request (their last question), then gives
advice from the topic the request's words point to (food, health, pets,
home, travel, work, money, hobbies, family) followed by general advice,
picked and ordered by a hash of the user's text (memory blocks removed): the
same question always gets the same reply, replies on different topics read
differently, and a reply never repeats a personal detail the user gave
outside their question.
"""

from __future__ import annotations

import hashlib
import random
import re

DEFAULT_WORDS = 300

_BLOCKS = re.compile(r"<memproxy:[a-z]+>.*?</memproxy:[a-z]+>", re.DOTALL)

OPENERS = (
    "That's a great question, and it's one a lot of people run into.",
    "Happy to help with this! There are a few angles worth considering.",
    "Good thinking to plan ahead here; a little preparation goes a long way.",
    "This comes up often, and the good news is that there are some simple approaches that work well.",
    "Thanks for the context, that helps. Here is how I would approach it.",
    "Great question! Let me break it down into a few practical steps.",
)

POINTS = (
    ("Start small", "Pick one manageable step you can take this week rather than trying to change everything at once, "
     "because early wins make it much easier to keep going."),
    ("Set a routine", "Doing things at the same time each day turns an effort into a habit, and habits need far less "
     "willpower than decisions made from scratch."),
    ("Keep notes", "Write down what you try and how it went; after a couple of weeks the patterns become obvious and "
     "you can drop whatever is not helping."),
    ("Ask for input", "Talk to someone who has done this before, whether a friend, a colleague or an online community, "
     "since they will know the pitfalls that guides tend to skip."),
    ("Budget realistically", "Add up the expected costs, then add a margin of around fifteen percent for the surprises "
     "that almost always appear along the way."),
    ("Mind the timing", "Some options are cheaper or calmer outside peak periods, so a bit of flexibility on dates can "
     "make the whole experience noticeably better."),
    ("Prepare the space", "A tidy, well-lit area with everything you need within reach removes a surprising amount of "
     "friction and makes it easier to get started."),
    ("Check the details", "Read the instructions or terms carefully before committing; small print about returns, "
     "cancellations or warranties matters more than it seems."),
    ("Go step by step", "Break the task into stages with a clear finish line for each, so you always know what the next "
     "action is and can pause without losing track."),
    ("Look after yourself", "Sleep, water and regular breaks affect how well everything else goes, so build them into "
     "the plan instead of treating them as optional."),
    ("Compare a few options", "Shortlist two or three choices and compare them on the criteria that matter most to "
     "you, rather than chasing the single perfect option."),
    ("Use reminders", "A calendar entry or a phone reminder takes seconds to set up and prevents the most common "
     "problem of all, which is simply forgetting."),
    ("Involve others", "If other people are affected, share the plan early; it avoids misunderstandings and they may "
     "offer help you had not thought to ask for."),
    ("Expect setbacks", "Something will not go to plan, and that is normal; decide in advance what you will do when it "
     "happens so it does not derail the rest."),
    ("Keep it enjoyable", "Add something you look forward to, like good music, a favourite snack or a small reward, "
     "because enjoyment is what keeps people consistent."),
    ("Review regularly", "Once a month, take ten minutes to look back at what worked and adjust the plan; small "
     "corrections early save big ones later."),
    ("Trust reliable sources", "Prefer official guidance, reputable reviews and people with real experience over "
     "anonymous claims, especially where health or money is involved."),
    ("Have a backup", "Keep a simple plan B ready, such as an alternative date, supplier or method, so one problem "
     "does not leave you stuck."),
)

TOPICS: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "food": (
        ("cook", "recipe", "dinner", "lunch", "breakfast", "meal", "dessert", "bake", "snack", "eat", "food", "menu",
         "restaurant", "kitchen", "grocery", "diet"),
        (
            ("Balance the plate", "Aim for a mix of vegetables, a source of protein and some whole grains; it keeps you "
             "full longer and makes planning the rest of the week easier."),
            ("Prep ahead", "Chopping vegetables and cooking a batch of grains on the weekend cuts weeknight cooking "
             "time roughly in half."),
            ("Season in layers", "Salt a little at each stage and finish with something acidic like lemon juice or "
             "vinegar; it brightens almost any dish."),
            ("Read the labels", "Packaged foods often hide ingredients in unexpected places, so a quick look at the "
             "label saves trouble later."),
            ("Keep a few staples", "A pantry with canned tomatoes, beans, pasta, rice, eggs and spices means a decent "
             "meal is always twenty minutes away."),
        ),
    ),
    "health": (
        ("doctor", "pain", "sleep", "exercise", "workout", "run", "running", "gym", "health", "symptom", "medication",
         "allergy", "allergic", "back", "knee", "stress", "tired", "headache", "therapy", "stretch"),
        (
            ("Listen to your body", "Mild discomfort that fades is usually fine, but sharp or lasting pain is a signal "
             "to stop and get it checked."),
            ("Warm up properly", "Five to ten minutes of gentle movement before exercise lowers the risk of strains "
             "noticeably."),
            ("Protect your sleep", "A consistent bedtime, a dark room and no screens for the last half hour make a "
             "measurable difference to energy the next day."),
            ("Talk to a professional", "For anything persistent, a doctor or physiotherapist can give advice tailored "
             "to you that no general guide can."),
            ("Build up gradually", "Increase intensity or duration by about ten percent a week so your body has time "
             "to adapt."),
        ),
    ),
    "pets": (
        ("cat", "dog", "puppy", "kitten", "vet", "pet", "walk", "leash", "litter", "bird", "fish", "rabbit", "hamster"),
        (
            ("Keep routines steady", "Animals feel safer with predictable feeding, walking and play times, which "
             "reduces anxious behaviour."),
            ("Use positive reinforcement", "Reward the behaviour you want with treats or praise right away; it works "
             "far better than scolding."),
            ("Make new things familiar", "Introduce carriers, harnesses or new spaces gradually, with treats, well "
             "before you actually need them."),
            ("Check with the vet", "Changes in appetite, energy or litter habits are worth a call to the vet, "
             "especially in older animals."),
            ("Enrich their day", "Puzzle feeders, short training sessions and new smells keep a pet mentally busy and "
             "calmer at home."),
        ),
    ),
    "home": (
        ("house", "home", "apartment", "flat", "garden", "room", "move", "moving", "rent", "neighbour", "neighbor",
         "furniture", "paint", "clean", "decor", "balcony", "plants"),
        (
            ("Measure twice", "Before buying furniture or materials, measure the space and the doorways it has to pass "
             "through."),
            ("Declutter first", "Clearing out what you no longer use makes every other project, from cleaning to "
             "redecorating, quicker."),
            ("Think about light", "Mirrors, lighter colours and layered lamps make a room feel larger and more "
             "welcoming."),
            ("Plan the workflow", "Group tasks by room and do the messy jobs first, so finished areas stay clean."),
            ("Check the rules", "If you rent, read the lease or ask the landlord before making changes to walls or "
             "fixtures."),
        ),
    ),
    "travel": (
        ("trip", "travel", "flight", "hotel", "vacation", "holiday", "visit", "pack", "packing", "airport", "city",
         "itinerary", "tour", "beach", "hike", "hiking"),
        (
            ("Book the essentials early", "Flights and central accommodation go up in price closer to the date, while "
             "activities can usually wait."),
            ("Pack light", "Choose clothes that mix and match and plan to do one load of laundry; a lighter bag makes "
             "every transfer easier."),
            ("Leave slack in the itinerary", "One unplanned afternoon for every two or three planned days keeps the "
             "trip relaxed."),
            ("Keep copies of documents", "Store photos of your passport, tickets and bookings offline on your phone "
             "in case something goes missing."),
            ("Learn a few phrases", "Greetings, please and thank you in the local language go a long way with the "
             "people you meet."),
        ),
    ),
    "work": (
        ("work", "job", "boss", "manager", "team", "meeting", "project", "deadline", "colleague", "office", "career",
         "interview", "shift", "client", "email", "presentation"),
        (
            ("Clarify expectations", "Confirm what done looks like and by when; most workplace stress comes from "
             "unclear goals rather than hard ones."),
            ("Protect focus time", "Block a couple of hours in your calendar for deep work and treat them like a "
             "meeting."),
            ("Communicate early", "Flag risks to a deadline as soon as you see them; people respond much better to "
             "early warnings than late surprises."),
            ("Keep a brag document", "Note your wins and the feedback you get; it makes reviews and job applications "
             "far easier."),
            ("Prepare for meetings", "A short agenda and a clear question you need answered make meetings shorter "
             "and more useful."),
        ),
    ),
    "money": (
        ("budget", "save", "saving", "money", "cost", "price", "buy", "expensive", "cheap", "afford", "loan",
         "invest", "bank", "gift", "bills"),
        (
            ("Track spending for a month", "Seeing where the money actually goes is usually more useful than any "
             "budgeting rule."),
            ("Pay yourself first", "Move a fixed amount to savings on payday so saving does not depend on what is "
             "left at the end of the month."),
            ("Wait before big purchases", "A 48-hour pause on anything non-essential above a set amount filters out "
             "most impulse buys."),
            ("Compare total cost", "Look beyond the sticker price to running costs, fees and how long the item will "
             "last."),
            ("Keep an emergency fund", "A few months of expenses set aside turns surprises into inconveniences rather "
             "than crises."),
        ),
    ),
    "hobbies": (
        ("hobby", "learn", "learning", "practice", "guitar", "piano", "paint", "painting", "knit", "read", "book",
         "game", "photography", "camera", "music", "class", "course", "draw", "garden", "gardening"),
        (
            ("Practise little and often", "Fifteen focused minutes a day beats a long session once a week for "
             "building a skill."),
            ("Find a community", "Local clubs, classes or online forums offer feedback, motivation and people to "
             "share progress with."),
            ("Pick a small project", "A concrete goal, such as one song, one piece or one photo series, keeps practice "
             "purposeful."),
            ("Invest gradually", "Start with decent entry-level equipment and upgrade only once you know what you "
             "need."),
            ("Record your progress", "Photos, recordings or a simple log make improvement visible on days it does "
             "not feel like it."),
        ),
    ),
    "family": (
        ("kid", "kids", "child", "children", "son", "daughter", "wife", "husband", "partner", "mom", "mum", "dad",
         "parent", "parents", "sister", "brother", "family", "baby", "grandma", "birthday", "wedding"),
        (
            ("Make time together", "Regular, simple rituals such as a weekly meal or a walk matter more than big "
             "occasional outings."),
            ("Share the load", "Agree who handles what at home and revisit it when circumstances change, so no one "
             "quietly burns out."),
            ("Plan celebrations early", "Guests, venues and gifts are all easier to sort out a few weeks ahead."),
            ("Listen first", "When someone is upset, acknowledging how they feel before offering solutions usually "
             "helps the conversation."),
            ("Keep a shared calendar", "One calendar everyone can see prevents double bookings and forgotten "
             "appointments."),
        ),
    ),
}

CLOSERS = (
    "If you tell me a bit more about your situation, I can tailor these suggestions further.",
    "Let me know how it goes, and feel free to come back with follow-up questions.",
    "I hope this helps! Would you like me to put together a more detailed plan?",
    "Good luck with it, and don't hesitate to ask if anything is unclear.",
)


def topic_of(text: str) -> str | None:
    """The topic whose words the text uses most (None: none of them)."""
    words = re.findall(r"[a-z]+", text.lower())
    scores = {name: sum(w in keys for w in words) for name, (keys, _) in TOPICS.items()}
    best = max(scores, key=lambda name: scores[name])
    return best if scores[best] else None


def request_of(text: str) -> str | None:
    """The user's last question, if they asked one."""
    questions = [q.strip() for q in re.findall(r"[^.!?\n]*\?", text) if len(q.split()) >= 3]
    return questions[-1] if questions else None


def long_reply(user_text: str, words: int = DEFAULT_WORDS) -> str:
    """About ``words`` words of structured advice, the same for the same ``user_text``."""
    text = _BLOCKS.sub("", user_text).strip()
    rng = random.Random(hashlib.sha256(text.encode("utf-8")).digest())
    topic = topic_of(text)
    topical = list(TOPICS[topic][1]) if topic else []
    general = list(POINTS)
    rng.shuffle(topical)
    rng.shuffle(general)
    head = rng.choice(OPENERS)
    asked = request_of(text)
    if asked:
        head += f' You asked: "{asked}"'
    closer = rng.choice(CLOSERS)
    parts = [head, ""]
    count = len(head.split())
    budget = max(0, words - len(closer.split()))
    for n, (title, body) in enumerate((topical + general) * (1 + words // 400), start=1):
        if count >= budget:
            break
        line = f"{n}. **{title}:** {body}"
        parts.append(line)
        count += len(line.split())
    parts += ["", closer]
    return "\n".join(parts)
