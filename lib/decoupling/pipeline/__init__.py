"""The book machinery: results store and provenance, chapter context, figures, claims, rebuild, status, publishing, sweeps."""
