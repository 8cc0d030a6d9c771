"""Well-known real tracks at the head of every catalogue, so demos show familiar names.

``source`` says where each fact comes from (docs/emulator.md has the table):

- ``capture``: ISRC, duration and Spotify ids as recorded from the real Spotify API
  (shared/fixtures/real/spotify), MBIDs and tags from real MusicBrainz / Last.fm captures;
- ``mb-test``: ISRC, length and first release date from musicbrainz-server's test data;
- ``knowledge``: artist, title, album and year are well known; the duration is approximate
  and the ISRC (absent here) is synthetic, except Strobe's, which is the design document's
  example ISRC (unverified).

Anything not given here (ids, popularity, most tags) is synthetic, derived from the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["REAL_ARTISTS", "REAL_TRACKS", "RealArtist", "RealTrack"]


@dataclass(frozen=True, slots=True)
class RealArtist:
    name: str
    sort_name: str
    kind: str  # MusicBrainz artist type: "Person" or "Group"
    country: str
    genre_family: int  # index into GENRE_FAMILIES
    spotify_id: str | None = None
    mbid: str | None = None
    disambiguation: str = ""
    begin: int | None = None  # formed or born (well known)
    lastfm_tags: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class RealTrack:
    credits: tuple[tuple[str, str], ...]  # (artist name, MusicBrainz join phrase after it)
    title: str
    album: str
    release_date: str  # "YYYY" or "YYYY-MM-DD"
    duration_ms: int
    track_number: int
    source: str
    isrc: str | None = None
    spotify_id: str | None = None
    album_spotify_id: str | None = None
    mbid: str | None = None
    lastfm_mbid: str | None = None
    explicit: bool = False
    tags: tuple[tuple[str, int], ...] = ()
    feat_in_title: bool = False  # Spotify and Last.fm put "(feat. ...)" in the title


# fmt: off
REAL_ARTISTS: tuple[RealArtist, ...] = (
    RealArtist("The Killers", "Killers, The", "Group", "US", 1, begin=2001,
               spotify_id="0C0XlULifJtAgn6ZNCW2eu"),
    RealArtist("Muse", "Muse", "Group", "GB", 1, begin=1994, spotify_id="12Chz98pHFMPJEknJQMWvI"),
    RealArtist("Ed Sheeran", "Sheeran, Ed", "Person", "GB", 2, begin=1991,
               mbid="b8a7c51f-362c-4dcb-a259-bc6e0095f0a6",
               disambiguation="famous UK singer-songwriter"),
    RealArtist("The Chemical Brothers", "Chemical Brothers, The", "Group", "GB", 0, begin=1989),
    RealArtist("Linkin Park", "Linkin Park", "Group", "US", 1, begin=1996,
               mbid="f59c5520-5f46-4d2c-b2c4-822eabf53419"),
    RealArtist("Daft Punk", "Daft Punk", "Group", "FR", 0, begin=1993,
               mbid="056e4f3e-d505-4dad-8ec1-d04f521cbb56"),
    RealArtist("deadmau5", "deadmau5", "Person", "CA", 0, begin=1981),
    RealArtist("AC/DC", "AC/DC", "Group", "AU", 6, begin=1973),
    RealArtist("Skee-Lo", "Skee-Lo", "Person", "US", 3, begin=1973,
               mbid="9341a67c-4f0c-43c2-9ec4-c222d2cb97f3"),
    RealArtist("Guns N' Roses", "Guns N' Roses", "Group", "US", 1, begin=1985),
    RealArtist("Audioslave", "Audioslave", "Group", "US", 1, begin=2001, lastfm_tags=(
        ("rock", 100), ("alternative rock", 78), ("hard rock", 52), ("alternative", 46),
        ("Grunge", 41), ("seen live", 19), ("post-grunge", 10), ("metal", 8),
        ("Audioslave", 8), ("american", 5), ("Chris Cornell", 4), ("indie", 4),
    )),
    RealArtist("U2", "U2", "Group", "IE", 1, begin=1976, spotify_id="51Blml2LZPmy7TTiAg47vQ",
               mbid="a3cb23fc-acd3-4ce0-8f36-1e5aa6a18432"),
    RealArtist("Depeche Mode", "Depeche Mode", "Group", "GB", 2, begin=1980,
               mbid="8538e728-ca0b-4321-b7e5-cff6565dd4c0"),
    RealArtist("Björk", "Björk", "Person", "IS", 0, begin=1965),
    RealArtist("Sigur Rós", "Sigur Rós", "Group", "IS", 1, begin=1994),
    RealArtist("Beyoncé", "Beyoncé", "Person", "US", 7, begin=1981),
    RealArtist("Pharrell Williams", "Williams, Pharrell", "Person", "US", 3, begin=1973),
    RealArtist("Nile Rodgers", "Rodgers, Nile", "Person", "US", 7, begin=1952),
)

REAL_TRACKS: tuple[RealTrack, ...] = (
    # The ISRC is the design document's example (gateway-design.md's Quick start looks it up),
    # not a verified fact: Strobe's real ISRC could not be checked here.
    RealTrack((("deadmau5", ""),), "Strobe", "For Lack of a Better Name", "2009", 637000, 10,
              "knowledge", isrc="USIR20400500",
              tags=(("progressive house", 100), ("electronic", 71),
                    ("deadmau5", 40), ("house", 33), ("trance", 12))),
    RealTrack((("The Killers", ""),), "Mr. Brightside", "Hot Fuss (Deluxe Version)", "2004",
              222200, 2, "capture", isrc="GBFFP0300052", spotify_id="3n3Ppam7vgaVa1iaRUc9Lp",
              album_spotify_id="4OHNH3sDzIxnmUADXzv2kT",
              tags=(("indie", 100), ("rock", 78), ("alternative", 61), ("indie rock", 55))),
    # The same song on the US release: a different ISRC and Spotify id, as in reality.
    RealTrack((("The Killers", ""),), "Mr. Brightside", "Hot Fuss", "2004", 222075, 2, "capture",
              isrc="USIR20400274", spotify_id="0eGsygTp906u18L0Oimnem",
              album_spotify_id="6TJmQnO44YE5BtTxH8pop1"),
    RealTrack((("The Killers", ""),), "Somebody Told Me", "Hot Fuss (Deluxe Version)", "2004",
              197280, 4, "capture", isrc="GBFFP0300054", spotify_id="3twNvmDtFQtAd5gMKedhLD",
              album_spotify_id="4OHNH3sDzIxnmUADXzv2kT"),
    RealTrack((("Muse", ""),), "Supermassive Black Hole", "Black Holes And Revelations", "2006",
              212439, 3, "capture", isrc="GBAHT0500593", spotify_id="3lPr8ghNDBLc2uZovNyLs9",
              album_spotify_id="0lw68yx3MhKflWFqCsGkIs",
              tags=(("alternative rock", 100), ("rock", 80), ("Muse", 42), ("alternative", 40))),
    RealTrack((("Muse", ""),), "Knights Of Cydonia", "Black Holes And Revelations", "2006",
              366213, 11, "capture", isrc="GBAHT0500600", spotify_id="7ouMYWpwJ422jRcDASZB7P",
              album_spotify_id="0lw68yx3MhKflWFqCsGkIs"),
    RealTrack((("Muse", ""),), "Hysteria", "Absolution", "2003", 227440, 8, "capture",
              isrc="GBCVT0300083", spotify_id="7xyYsOvq5Ec3P4fr6mM9fD"),
    RealTrack((("Muse", ""),), "Time Is Running Out", "Absolution", "2003", 237039, 3, "capture",
              isrc="GBCVT0300078", spotify_id="2takcwOaAZWiXQijPHIx7B"),
    RealTrack((("Muse", ""),), "Psycho", "Drones", "2015", 316717, 3, "capture",
              isrc="GBAHT1500068", spotify_id="383QXk8nb2YrARMUwDdjQS", explicit=True),
    RealTrack((("Muse", ""),), "Undisclosed Desires", "The Resistance", "2009", 235000, 3,
              "capture", isrc="GBAHT0900322", spotify_id="0It6VJoMAare1zdV2wxqZq"),
    RealTrack((("Ed Sheeran", ""),), "Thinking Out Loud", "x", "2014-06-20", 281000, 11,
              "capture", isrc="GBAHS1400099", mbid="cb2cc207-8125-445c-9ef9-6ea44eee959a",
              tags=(("pop", 100), ("blue-eyed soul", 33), ("acoustic", 20))),
    RealTrack((("The Chemical Brothers", ""),), "Hey Boy Hey Girl", "Surrender", "1999-06-21",
              289946, 4, "mb-test", isrc="GBAAA9900303",
              tags=(("big beat", 100), ("electronic", 90), ("dance", 35))),
    RealTrack((("Linkin Park", ""),), "One Step Closer", "Hybrid Theory", "2000", 157000, 2,
              "capture", lastfm_mbid="30cb03f3-bd95-43b0-9d41-6d75e13cd353",
              tags=(("Nu Metal", 100), ("rock", 88), ("Linkin Park", 51),
                    ("alternative rock", 47), ("alternative", 40))),
    RealTrack((("Daft Punk", ""),), "Something About Us", "Discovery", "2001", 232000, 13,
              "capture", lastfm_mbid="defbfcb2-7a5c-4456-be28-b7e5ccf92cc2",
              tags=(("electronic", 100), ("chillout", 64), ("poptron", 20), ("electronica", 19),
                    ("Daft Punk", 17))),
    RealTrack((("AC/DC", ""),), "Hells Bells", "Back in Black", "1980", 312000, 1, "knowledge",
              tags=(("hard rock", 100), ("rock", 58), ("classic rock", 53), ("ACDC", 27),
                    ("heavy metal", 25), ("80s", 14), ("AC/DC", 12), ("metal", 11),
                    ("australian", 6), ("guitar", 6), ("Rock and Roll", 5), ("hells bells", 5))),
    RealTrack((("Skee-Lo", ""),), "I Wish", "I Wish", "1995", 251000, 1, "knowledge",
              lastfm_mbid="ccb9326a-6f9f-48b1-a097-1210dd14e119", tags=(("hip-hop", 100),)),
    RealTrack((("Guns N' Roses", ""),), "Mr. Brownstone", "Appetite for Destruction", "1987",
              229000, 4, "knowledge", explicit=True,
              tags=(("hard rock", 100), ("rock", 74), ("80s", 30), ("classic rock", 28))),
    RealTrack((("Audioslave", ""),), "Like a Stone", "Audioslave", "2002", 294000, 5,
              "knowledge", tags=(("rock", 100), ("alternative rock", 81), ("grunge", 38))),
    RealTrack((("U2", ""),), "One", "Achtung Baby", "1991", 276000, 3, "knowledge",
              tags=(("rock", 100), ("80s", 12), ("classic rock", 44), ("irish", 21))),
    RealTrack((("Depeche Mode", ""),), "Just Can't Get Enough", "Speak & Spell", "1981",
              220000, 9, "knowledge",
              tags=(("new wave", 100), ("synthpop", 92), ("80s", 71), ("electronic", 40))),
    RealTrack((("Björk", ""),), "Jóga", "Homogenic", "1997", 305000, 2, "knowledge",
              tags=(("electronic", 100), ("female vocalists", 70), ("trip-hop", 48))),
    RealTrack((("Sigur Rós", ""),), "Hoppípolla", "Takk...", "2005", 268000, 2, "knowledge",
              tags=(("post-rock", 100), ("ambient", 61), ("icelandic", 44))),
    RealTrack((("Beyoncé", ""),), "Halo", "I Am... Sasha Fierce", "2008", 261000, 2, "knowledge",
              tags=(("rnb", 100), ("pop", 93), ("female vocalists", 52))),
    RealTrack((("Daft Punk", " feat. "), ("Pharrell Williams", " & "), ("Nile Rodgers", "")),
              "Get Lucky", "Random Access Memories", "2013", 369000, 8, "knowledge",
              feat_in_title=True,
              tags=(("disco", 100), ("funk", 87), ("electronic", 66), ("Daft Punk", 30))),
)
# fmt: on
