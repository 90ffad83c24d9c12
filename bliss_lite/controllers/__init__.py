"""Controllers: axes and their motor controllers, counters and measurement groups."""
