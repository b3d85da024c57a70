"""The annotations users (kubectl annotate, the CLI, the UI) and the operator exchange on a
Workflow: one home for their names."""

ANNOTATION_PREFIX = "cerebelum.io/"
APPROVE = ANNOTATION_PREFIX + "approve"
REJECT = ANNOTATION_PREFIX + "reject"
REASON = ANNOTATION_PREFIX + "reason"
APPROVAL_DATA = ANNOTATION_PREFIX + "approval-data"
CANCEL = ANNOTATION_PREFIX + "cancel"
DECIDED_BY = ANNOTATION_PREFIX + "decided-by"
#: The option an approver picks, for a gate with ``options``.
CHOICE = ANNOTATION_PREFIX + "choice"
#: Who created the workflow: stamped by the webhook at create, never set by a user.
CREATED_BY = ANNOTATION_PREFIX + "created-by"
#: ``kubectl annotate workflow W cerebelum.io/callback=STEP [cerebelum.io/callback-data=JSON]``
CALLBACK = ANNOTATION_PREFIX + "callback"
CALLBACK_DATA = ANNOTATION_PREFIX + "callback-data"
#: ``succeeded`` (the default), ``failed`` or ``heartbeat``.
CALLBACK_OUTCOME = ANNOTATION_PREFIX + "callback-outcome"
#: A delivery the callback endpoint accepted, one key per step: ``callback.cerebelum.io/STEP``.
CALLBACK_RECEIVED_PREFIX = "callback.cerebelum.io/"
