"""Label assignment: ATSS and Dynamic ATSS (combined predicted and anchor IoUs)."""

from dynatss.assign.atss import Assignment, atss_assign
from dynatss.assign.ignore import ignored_anchors
from dynatss.assign.schedule import combination_weights, positive_cap

__all__ = ["Assignment", "atss_assign", "ignored_anchors", "combination_weights", "positive_cap"]
