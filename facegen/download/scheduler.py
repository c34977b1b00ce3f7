"""Fetch every link and analyse every new body, overlapping both, with bounded memory.

One main thread owns the cache (SQLite is used from one thread) and persists each result as it
completes; two thread pools only return results: ``download.workers`` fetches and
``download.detect_workers`` analyses. Fetched bodies wait in memory until analysed, so fetching
pauses while detection lags (the back-pressure limits below).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from facegen.common.http import make_session
from facegen.download.analysis import Detector, analyse, decide, stale
from facegen.download.cache import Analysis, FetchCache, FetchRecord
from facegen.download.config import DownloadConfig, analysis_key
from facegen.download.fetch import TRANSIENT_FAILURES, FetchResult, HostGate, fetch_url
from facegen.faces.detect import FacesConfig

Hook = Callable[[str, str], None]  # (kind "fetch" | "analysis", url or sha256), after each record is persisted

# Back-pressure, in units of the pool sizes (the values the stage was tuned with):
FETCHES_PER_WORKER = 2  # requests queued per fetch worker: the pool never idles while results are persisted
CACHED_PER_DETECTOR = 2  # cached bodies (resume, changed detector) queued per detect worker, plus CACHED_SLACK:
CACHED_SLACK = 2  # ... read from disk a few at a time, never all at once
BODIES_PER_DETECTOR = 4  # analyses pending per detect worker (plus one per fetch worker) before fetching
# pauses: each pending analysis holds a body of up to max_bytes in memory


def _progress_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="download", unit="link", disable=not enabled, dynamic_ncols=True)


class FetchAnalyse:
    """One run over a list of URLs: what to fetch and analyse, the two pools, live status counts.

    ``detector`` (anything with ``detect(bgr) -> list[Detection]``) is built from ``faces`` only
    if some image needs it, once, under a lock (a re-filter from a full cache never loads it).
    """

    def __init__(
        self,
        cfg: DownloadConfig,
        faces: FacesConfig,
        cache: FetchCache,
        *,
        detector: Detector | None = None,
        after_persist: Hook | None = None,
        progress: bool = True,
    ) -> None:
        self.cfg, self.faces, self.cache = cfg, faces, cache
        self.key = analysis_key(cfg, faces)
        self.after_persist, self.progress = after_persist, progress
        self._detector = detector
        self._detector_lock = threading.Lock()
        self.counts: Counter[str] = Counter()  # provisional status of each link, for the progress bar
        self.scheduled: set[str] = set()  # bodies analysed or queued: a second copy is not analysed again
        self.first_fetch: dict[str, FetchRecord] = {}  # new bodies awaiting analysis, for live status counts
        self.pending: dict[Future, str] = {}  # future -> "fetch" | "analysis"

    def plan(self, urls: list[str]) -> tuple[list[str], list[str]]:
        """(URLs to fetch, sha256 of cached bodies to analyse) in a stable order."""
        cfg = self.cfg
        known = self.cache.fetches(urls)
        # blocked_host is asked again each run (one DNS lookup): allow_private_hosts may have changed
        todo = [
            u
            for u in dict.fromkeys(urls)
            if u not in known
            or known[u].status == "blocked_host"
            or (cfg.retry_failed and known[u].status in TRANSIENT_FAILURES)
        ]
        have = {r.sha256 for r in known.values() if r.sha256}
        analysed = {sha for sha, an in self.cache.analyses(have, self.key).items() if not stale(an, cfg)}
        to_analyse = sorted(have - analysed)
        self.scheduled = set(to_analyse) | analysed
        return todo, to_analyse

    def detector(self) -> Detector:
        with self._detector_lock:
            if self._detector is None:
                from facegen.faces.detect import FaceDetector

                self._detector = FaceDetector(self.faces)
            return self._detector

    def _analyse(self, data: bytes | None, sha: str) -> Analysis:
        body = self.cache.read_blob(sha) if data is None else data
        return analyse(body, self.detector(), self.cfg, self.key)

    def run(self, urls: list[str]) -> None:
        """Fetch every URL not yet in the cache and analyse every fetched body not yet analysed.

        The progress bar counts links fetched, with live counts of each link's (provisional)
        status. Fetch outcomes and analyses are written to the cache as each completes (main
        thread only), so an interruption loses at most the requests in flight.
        """
        todo, to_analyse = self.plan(urls)
        if not todo and not to_analyse:
            return
        cfg = self.cfg
        gate = HostGate(cfg.per_host, cfg.host_delay_s, cfg.backoff_max_s)
        session = make_session(cfg.http(), policy=cfg.policy())
        self.bar = _progress_bar(len(todo), self.progress)
        fetch_pool = ThreadPoolExecutor(cfg.workers, thread_name_prefix="fetch")
        self.analyse_pool = ThreadPoolExecutor(cfg.detect_workers, thread_name_prefix="detect")

        def fetch(url: str) -> Future:
            return fetch_pool.submit(
                fetch_url,
                session,
                url,
                gate,
                timeout_s=cfg.timeout_s,
                max_bytes=cfg.max_bytes,
                body_deadline_s=cfg.body_deadline_s,
            )

        try:
            self._loop(iter(to_analyse), iter(todo), fetch)
        finally:
            self.bar.close()
            fetch_pool.shutdown(wait=False, cancel_futures=True)
            self.analyse_pool.shutdown(wait=False, cancel_futures=True)
            session.close()

    def _loop(self, cached: Iterator[str], urls: Iterator[str], fetch: Callable[[str], Future]) -> None:
        cfg, pending = self.cfg, self.pending
        exhausted = False
        while True:
            n_fetch = sum(1 for k in pending.values() if k == "fetch")
            n_analyse = len(pending) - n_fetch
            while n_analyse < CACHED_PER_DETECTOR * cfg.detect_workers + CACHED_SLACK and (
                (sha := next(cached, None)) is not None
            ):
                pending[self.analyse_pool.submit(self._analyse, None, sha)] = "analysis"
                n_analyse += 1
            while (
                not exhausted
                and n_fetch < FETCHES_PER_WORKER * cfg.workers
                and n_analyse < BODIES_PER_DETECTOR * cfg.detect_workers + cfg.workers
            ):
                url = next(urls, None)
                if url is None:
                    exhausted = True
                    break
                pending[fetch(url)] = "fetch"
                n_fetch += 1
            if not pending:
                return
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                if pending.pop(fut) == "fetch":
                    self._fetched(fut.result())
                else:
                    self._analysed(fut.result())

    def _fetched(self, res: FetchResult) -> None:
        rec = self.cache.put_fetch(res)
        self.bar.update(1)
        if rec.sha256 is None:
            self.counts[rec.status] += 1  # a final status already
        elif rec.sha256 in self.scheduled:
            self.counts["same_bytes"] += 1  # duplicate or sharing the first copy's fate
        else:
            self.scheduled.add(rec.sha256)
            self.first_fetch[rec.sha256] = rec
            self.pending[self.analyse_pool.submit(self._analyse, res.body, rec.sha256)] = "analysis"
        self.bar.set_postfix(dict(self.counts), refresh=False)
        if self.after_persist:
            self.after_persist("fetch", rec.url)

    def _analysed(self, an: Analysis) -> None:
        self.cache.put_analysis(an)
        fetch_rec = self.first_fetch.pop(an.sha256, None)  # None: a cached body re-analysed
        self.counts[decide(fetch_rec, an, self.cfg)[0] if fetch_rec else "reanalysed"] += 1
        self.bar.set_postfix(dict(self.counts), refresh=False)
        if self.after_persist:
            self.after_persist("analysis", an.sha256)
