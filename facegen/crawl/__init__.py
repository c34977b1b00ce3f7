"""facegen.crawl."""
