"""Word lists the synthetic catalogue draws its names from.

Some entries carry accents, apostrophes or ampersands on purpose: matching on the three
providers (and in tunegate) must treat "Déjà" and "deja" alike.
"""

from __future__ import annotations

# fmt: off

TITLE_WORDS: tuple[str, ...] = (
    "Midnight", "Echoes", "Golden", "River", "Shadows", "Electric", "Dreams", "Fire",
    "Silver", "Heart", "Rain", "Summer", "Winter", "Neon", "Ocean", "Stars", "Velvet",
    "Gravity", "Paper", "Glass", "Wild", "Honey", "Thunder", "Lights", "Runaway", "Parade",
    "Horizon", "Mirror", "Crystal", "Satellite", "Desert", "Garden", "Highway", "Empire",
    "Phantom", "Cherry", "Static", "Orbit", "Lullaby", "Anthem", "Signal", "Voltage",
    "Harbor", "Canyon", "Fever", "Ghost", "Magnetic", "Nomad", "Pulse", "Radio", "Scarlet",
    "Tides", "Wonder", "Atlas", "Blue", "Cold", "Dancing", "Falling", "Forever", "Hollow",
    "Infinite", "Jungle", "Kingdom", "Lonely", "Monday", "Northern", "Open", "Pacific",
    "Quiet", "Restless", "Sunday", "Tokyo", "Under", "Violet", "Waves", "Young", "Zero",
    "Déjà", "Vu", "Señorita", "Café", "Fiancé", "Naïve", "Über", "Rosé", "Crème", "Jalapeño",
    "Don't", "Stop", "Believe", "Tonight", "Home", "Again", "Alive", "Together", "Away",
    "Light", "Dark", "Love", "Night", "Day", "Time", "World", "Road", "City", "Sky", "Moon",
    "Sun", "Storm", "Smoke", "Stone", "Bones", "Blood", "Gold", "Diamond", "Rebel", "Angel",
    "Devil", "Paradise", "Machine", "Memory", "Secret", "Promise", "Letter", "Window",
    "Bridge", "Tower", "Island", "Mountain", "Valley", "Forest", "Flower", "Rose", "Lily",
    "Butterfly", "Wolf", "Lion", "Tiger", "Eagle", "Raven", "Swan", "Horse", "Train",
    "Airplane", "Rocket", "Comet", "Galaxy", "Universe", "Planet", "Eclipse", "Sunrise",
    "Sunset", "Twilight", "Dawn", "Dusk", "Morning", "Evening", "Yesterday", "Tomorrow",
    "Always", "Never", "Maybe", "Everything", "Nothing", "Someone", "Nobody", "Everybody",
    "Crazy", "Beautiful", "Broken", "Perfect", "Simple", "Sweet", "Bitter", "Strange",
    "Lucky", "Happy", "Sad", "Free", "Lost", "Found", "High", "Low", "Fast", "Slow", "Loud",
    "Soft", "Hard", "Easy", "True", "False", "Real", "Holy", "Sacred", "Modern", "Ancient",
    "Rhythm", "Groove", "Melody", "Harmony", "Chorus", "Verse", "Symphony", "Serenade",
    "Ballad", "Blues", "Boogie", "Disco", "Funk", "Soul", "Mambo", "Tango", "Waltz",
)

TITLE_SUFFIXES: tuple[str, ...] = (
    " - Radio Edit", " - Remastered 2011", " (Live)", " - Acoustic", " (Extended Mix)",
    " - Original Mix", " Pt. 2",
)

ALBUM_WORDS: tuple[str, ...] = (
    "Chronicles", "Sessions", "Stories", "Letters", "Visions", "Reflections", "Horizons",
    "Fragments", "Colours", "Seasons", "Journeys", "Confessions", "Memories", "Echoes",
    "Postcards", "Signals", "Rituals", "Anthems", "Landscapes", "Portraits", "Tales",
    "Waves", "Patterns", "Currents", "Silhouettes", "Mirrors", "Lanterns", "Machines",
    "Gardens", "Ruins", "Skylines", "Frequencies", "Parallels", "Satellites", "Islands",
    "Mélodies", "Rêveries", "Canciones", "Lieder", "Cicatrices",
)

ALBUM_ADJECTIVES: tuple[str, ...] = (
    "Northern", "Electric", "Golden", "Silent", "Midnight", "Urban", "Distant", "Wild",
    "Neon", "Velvet", "Crimson", "Endless", "Hidden", "Broken", "Infinite", "Lonely",
    "Modern", "Secret", "Summer", "Winter", "Paper", "Crystal", "Analog", "Digital",
)

FIRST_NAMES: tuple[str, ...] = (
    "Anna", "Ben", "Clara", "David", "Elena", "Felix", "Grace", "Hugo", "Iris", "Jonas",
    "Kate", "Leo", "Maya", "Noah", "Olivia", "Paul", "Quinn", "Rosa", "Sam", "Tara", "Umar",
    "Vera", "Will", "Xena", "Yusuf", "Zoë", "Renée", "José", "Björn", "Chloé", "Sören",
    "Åsa", "Léa", "Mateo", "Nina", "Oscar", "Priya", "Ravi", "Sofia", "Theo", "Ulla",
    "Viktor", "Wanda", "Yara", "Zack", "Amélie", "Bruno", "Carmen", "Dario", "Emil",
    "Frida", "Gustav", "Hana", "Ines", "Jamal", "Kenji", "Lina", "Marco", "Nadia", "Omar",
    "Pia", "Rafael", "Selma", "Tomás", "Uma", "Vincent", "Mia", "Lucas", "Ella", "Max",
)

LAST_NAMES: tuple[str, ...] = (
    "Adams", "Berg", "Carter", "Dubois", "Evans", "Fischer", "García", "Hansen", "Ito",
    "Jensen", "Kowalski", "Lindqvist", "Moreau", "Novak", "O'Brien", "Petrov", "Quist",
    "Rossi", "Schmidt", "Tanaka", "Ueda", "Vargas", "Weber", "Xu", "Young", "Zimmermann",
    "Müller", "Núñez", "Öberg", "Sánchez", "Lefèvre", "Dvořák", "Kovač", "Jönsson",
    "Brooks", "Cole", "Diaz", "Ellis", "Ford", "Gray", "Hayes", "Irwin", "James", "Knight",
    "Lane", "Morgan", "Nash", "Owens", "Price", "Reed", "Stone", "Turner", "Vance", "Wells",
    "Blake", "Cruz", "Doyle", "Fox", "Grant", "Holt", "Kerr", "Lowe", "Marsh", "Nolan",
)

BAND_ADJECTIVES: tuple[str, ...] = (
    "Velvet", "Electric", "Silver", "Midnight", "Crimson", "Arctic", "Paper", "Neon",
    "Golden", "Wild", "Hollow", "Black", "White", "Blue", "Red", "Green", "Lunar", "Solar",
    "Atomic", "Cosmic", "Frozen", "Burning", "Silent", "Howling", "Dancing", "Flying",
    "Broken", "Lucky", "Strange", "Holy", "Mystic", "Savage", "Gentle", "Rusty", "Shiny",
    "Sleepy", "Wicked", "Little", "Big", "Young", "Old", "Lost", "Secret", "Royal",
    "Fabulous", "Magnetic", "Radiant", "Ragged", "Restless", "Scarlet",
)

BAND_NOUNS: tuple[str, ...] = (
    "Owls", "Foxes", "Wolves", "Tigers", "Ravens", "Sparrows", "Machines", "Lights",
    "Shadows", "Echoes", "Kings", "Queens", "Pilots", "Sailors", "Strangers", "Lovers",
    "Ghosts", "Angels", "Monsters", "Giants", "Rebels", "Saints", "Sinners", "Dreamers",
    "Drifters", "Hearts", "Hands", "Eyes", "Bones", "Stones", "Waves", "Rivers",
    "Mountains", "Islands", "Planets", "Comets", "Rockets", "Radios", "Engines", "Keys",
    "Mirrors", "Arrows", "Crowns", "Bandits", "Cowboys", "Astronauts", "Pirates", "Robots",
    "Orchestra", "Collective", "Brothers", "Sisters", "Society", "Club", "Union", "Parade",
    "Café", "Señores", "Fräuleins", "Garçons",
)

# Genre families: the first entry is the family's name; the rest are its sub-genres.
GENRE_FAMILIES: tuple[tuple[str, ...], ...] = (
    ("electronic", "house", "progressive house", "techno", "trance", "ambient", "electro"),
    ("rock", "indie rock", "alternative rock", "classic rock", "hard rock", "post-punk"),
    ("pop", "synthpop", "dance-pop", "indie pop", "electropop", "k-pop"),
    ("hip hop", "rap", "trap", "boom bap", "conscious hip hop"),
    ("jazz", "bebop", "smooth jazz", "jazz fusion", "swing"),
    ("folk", "indie folk", "americana", "singer-songwriter", "folk rock"),
    ("metal", "heavy metal", "thrash metal", "doom metal", "metalcore"),
    ("r&b", "soul", "neo soul", "funk", "contemporary r&b"),
    ("latin", "reggaeton", "salsa", "bossa nova", "latin pop"),
    ("classical", "baroque", "romantic", "contemporary classical", "opera"),
)

# Tags users add on Last.fm that are not genres.
EXTRA_TAGS: tuple[str, ...] = (
    "seen live", "favorites", "female vocalists", "male vocalists", "chill", "love",
    "beautiful", "summer", "party", "90s", "00s", "10s", "80s", "70s",
)

# ISO 3166-1 codes used both as artist countries and as ISRC country prefixes.
COUNTRIES: tuple[str, ...] = (
    "US", "GB", "DE", "FR", "SE", "NL", "CA", "AU", "JP", "BR", "ES", "IT", "NO", "DK", "FI",
    "IE", "BE", "MX", "KR", "NZ",
)

MARKETS: tuple[str, ...] = (
    "AD", "AR", "AT", "AU", "BE", "BG", "BO", "BR", "CA", "CH", "CL", "CO", "CR", "CY", "CZ",
    "DE", "DK", "DO", "EC", "EE", "ES", "FI", "FR", "GB", "GR", "GT", "HK", "HN", "HU", "ID",
    "IE", "IS", "IT", "JP", "LI", "LT", "LU", "LV", "MC", "MT", "MX", "MY", "NI", "NL", "NO",
    "NZ", "PA", "PE", "PH", "PL", "PT", "PY", "SE", "SG", "SK", "SV", "TH", "TR", "TW", "US",
    "UY", "VN",
)
# fmt: on
