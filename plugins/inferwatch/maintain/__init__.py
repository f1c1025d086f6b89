"""Operations on a lake that is already ingested: replay quarantined lines, compact bronze,
apply the retention policy. Each runs under the pipeline lock (see inferwatch.pipeline)."""
