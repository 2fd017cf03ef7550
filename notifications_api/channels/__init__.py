"""Delivery channels beyond the inbox: the outboxes, their clients and their workers."""
