"""What the live-update publisher needs from the database: a retraction names the users whose
counts it changed (sp_retract_notifications.user_ids), so their streams get the new counts."""
from __future__ import annotations

import uuid

from db_helpers import call, create, create_one


def test_a_retraction_returns_the_users_it_changed(db_app, db_user):
    ana, ben, cid = db_user(), db_user(), db_user()
    key, post = f"like-{uuid.uuid4()}", f"post-{uuid.uuid4()}"
    create(db_app, [ana, ben], dedupe_key=key, target_type="post", target_id=post)
    create_one(db_app, cid, dedupe_key=f"other-{uuid.uuid4()}")
    [row] = call(db_app, "sp_retract_notifications", dedupe_key=key)
    assert row["retracted_count"] == 2 and row["has_more"] is False
    assert row["user_ids"] == sorted([ana, ben])  # distinct, ascending; never the untouched cid
    [row] = call(db_app, "sp_retract_notifications", dedupe_key=key)
    assert row == {"retracted_count": 0, "has_more": False, "user_ids": []}
    create(db_app, [ana, ben], target_type="post", target_id=post)
    [row] = call(db_app, "sp_retract_notifications", target_type="post", target_id=post, user_ids=[ben])
    assert row["retracted_count"] == 1 and row["user_ids"] == [ben]
