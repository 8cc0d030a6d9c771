"""Figure 8's anchor: what users write today. A plain sequential script built from spotipy,
musicbrainzngs and pylast with their own rate limiting (musicbrainzngs: 1 request/s;
pylast: ``enable_rate_limit()``, 5/s; spotipy: its 429 retries), doing per row what
``tunegate enrich`` does: a Spotify search, a MusicBrainz lookup by the ISRC found (a
recording search without one), Last.fm's track tags (and track info when there are none).

``python _plain_enrich.py INPUT.csv OUTPUT.jsonl``, with the emulator's exports in the
environment (``SSL_CERT_FILE``/``REQUESTS_CA_BUNDLE`` trusting its CA). Prints the elapsed
seconds as JSON.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
import warnings
from typing import Any
from urllib.parse import urlsplit


def main() -> None:
    import musicbrainzngs
    import pylast
    import spotipy
    from spotipy.oauth2 import SpotifyClientCredentials

    warnings.simplefilter("ignore")
    env = os.environ
    auth = SpotifyClientCredentials(
        client_id=env["SPOTIFY_CLIENT_ID"],
        client_secret=env["SPOTIFY_CLIENT_SECRET"],
        cache_handler=spotipy.MemoryCacheHandler(),
    )
    auth.OAUTH_TOKEN_URL = env["TUNEGATE_SPOTIFY_AUTH_URL"]
    sp = spotipy.Spotify(auth_manager=auth, requests_timeout=10)
    sp.prefix = env["TUNEGATE_SPOTIFY_API_URL"] + "/"

    mb_url = urlsplit(env["TUNEGATE_MUSICBRAINZ_URL"])
    musicbrainzngs.set_useragent("tunegate-bench-plain", "0.1", "https://example.org/tunegate")
    musicbrainzngs.set_hostname(mb_url.netloc, use_https=mb_url.scheme == "https")
    musicbrainzngs.set_rate_limit(limit_or_interval=1.0, new_requests=1)

    lastfm = pylast.LastFMNetwork(api_key=env["LASTFM_API_KEY"], api_secret="unused")
    lastfm.ws_server = (urlsplit(env["TUNEGATE_LASTFM_URL"]).netloc, "/2.0/")
    lastfm.enable_rate_limit()

    t0 = time.perf_counter()
    with open(sys.argv[1], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(sys.argv[2], "w", encoding="utf-8") as out:
        for row in rows:
            record: dict[str, Any] = {"artist": row["artist"], "title": row["title"]}
            isrc = None
            try:
                q = f'track:"{row["title"]}" artist:"{row["artist"]}"'
                items = sp.search(q=q, type="track", limit=10)["tracks"]["items"]
                if items:
                    record["spotify_id"] = items[0]["id"]
                    isrc = items[0].get("external_ids", {}).get("isrc")
            except Exception as exc:
                record["spotify_error"] = repr(exc)
            try:
                if isrc:
                    found = musicbrainzngs.get_recordings_by_isrc(isrc, includes=["artists"])
                    recordings = found["isrc"]["recording-list"]
                else:
                    found = musicbrainzngs.search_recordings(
                        recording=row["title"], artist=row["artist"], limit=5
                    )
                    recordings = found["recording-list"]
                record["mbid"] = recordings[0]["id"] if recordings else None
            except Exception as exc:
                record["musicbrainz_error"] = repr(exc)
            try:
                track = lastfm.get_track(row["artist"], row["title"])
                tags = [t.item.get_name() for t in track.get_top_tags()]
                if not tags:
                    track.get_listener_count()  # "unknown track" or "no tags": ask which
                record["lastfm_tags"] = tags
            except Exception as exc:
                record["lastfm_error"] = repr(exc)
            out.write(json.dumps(record) + "\n")
    print(json.dumps({"elapsed": time.perf_counter() - t0, "rows": len(rows)}))


if __name__ == "__main__":
    main()
