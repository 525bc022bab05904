from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib.auth.models import User

from stacks.names import USERNAME_MAX, validate_stack_username


class ActionForm(forms.Form):
    """Every button that asks for a change. The key, new with each page, makes a form sent
    twice (a double click, a resubmission) ask only once."""

    key = forms.UUIDField(widget=forms.HiddenInput)

    @classmethod
    def fresh(cls) -> ActionForm:
        return cls(initial={"key": uuid.uuid4()})


class DeleteStackForm(ActionForm):
    """The delete confirmation: the person's files are kept unless this box is ticked."""

    delete_data = forms.BooleanField(required=False, label="Also delete my files")


class LocalSignInForm(forms.Form):
    """Sign in as anyone with a valid stack username; local development only (DEBUG on)."""

    username = forms.CharField(
        max_length=USERNAME_MAX,
        validators=[validate_stack_username],
        help_text="Lowercase letters, digits and single hyphens, starting with a letter.",
        widget=forms.TextInput(attrs={"autocomplete": "username", "autocapitalize": "none"}),
    )

    def clean_username(self) -> str:
        username: str = self.cleaned_data["username"]
        if User.objects.filter(username=username, is_staff=True).exists():
            raise forms.ValidationError("Staff accounts sign in through the admin.")
        return username

    def user(self) -> User:
        """The account with this username, created on the spot (without a password)."""
        user, created = User.objects.get_or_create(username=self.cleaned_data["username"])
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        return user

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs["autofocus"] = True
