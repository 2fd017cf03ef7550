"""Live updates: publishing to Pushpin after a commit, GRIP, stream tickets, the stream clock."""
