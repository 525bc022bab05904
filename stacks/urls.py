from django.urls import path

from stacks import views

urlpatterns = [
    path("", views.home, name="home"),
    path("stack/", views.stack_page, name="stack"),
    path("stack/delete", views.delete_stack, name="stack-delete"),
    path("stack/<slug:action>", views.stack_action, name="stack-action"),
    path("attempts/<int:attempt_id>/", views.attempt_page, name="attempt"),
    path("attempts/<int:attempt_id>/cancel", views.cancel_attempt, name="attempt-cancel"),
    path("attempts/<int:attempt_id>/retry", views.retry_attempt, name="attempt-retry"),
    path("history/", views.history, name="history"),
    path("sign-in", views.sign_in, name="sign-in"),
    path("sign-out", views.sign_out, name="sign-out"),
]
