from __future__ import annotations

from django.urls import path

from .views import alerts, observe, platform, pricing, recommendations, shell, stripe

app_name = "dashboard"

urlpatterns = [
    # Observe. Customer references and trace ids are any string: <path:> keeps a "/"
    # in one; those routes end without a slash for that reason.
    path("", observe.overview, name="home"),
    path("customers/", observe.customers, name="customers"),
    path("customers/<path:reference_id>", observe.customer, name="customer"),
    path("features/", observe.features, name="features"),
    path("models/", observe.models, name="models"),
    path("heatmap/", observe.heatmap, name="heatmap"),
    path("events/", observe.events, name="events"),
    path("events/<int:event_id>/", observe.event, name="event"),
    path("traces/<path:trace_id>", observe.trace, name="trace"),
    path("export/customers.csv", observe.customers_csv, name="customers_csv"),
    path("export/features.csv", observe.features_csv, name="features_csv"),
    path("export/models.csv", observe.models_csv, name="models_csv"),
    path("export/events.csv", observe.events_csv, name="events_csv"),
    path("first-event/", observe.first_event, name="first_event"),
    path("recommendations/", recommendations.recommendations, name="recommendations"),
    path(
        "recommendations/compute/",
        recommendations.recommendations_compute_now,
        name="recommendations_compute",
    ),
    path(
        "recommendations/<uuid:recommendation_id>/<str:decision>/",
        recommendations.recommendation_decide,
        name="recommendation_decide",
    ),
    path("alerts/", alerts.inbox, name="alerts"),
    path(
        "alerts/<uuid:notification_id>/acknowledge/", alerts.acknowledge, name="alert_acknowledge"
    ),
    # Settings -> model prices.
    path("settings/model-prices/", pricing.overrides, name="overrides"),
    path("settings/model-prices/new/", pricing.override_new, name="override_new"),
    path(
        "settings/model-prices/<uuid:override_id>/",
        pricing.override_edit,
        name="override_edit",
    ),
    path(
        "settings/model-prices/<uuid:override_id>/delete/",
        pricing.override_remove,
        name="override_delete",
    ),
    path("settings/model-prices/recost/", pricing.recost, name="recost"),
    path("settings/model-prices/recost/status/", pricing.recost_status, name="recost_status"),
    # Settings -> Stripe.
    path("settings/stripe/", stripe.stripe_settings, name="stripe"),
    path("settings/stripe/connect/", stripe.stripe_connect_view, name="stripe_connect"),
    path("settings/stripe/disconnect/", stripe.stripe_disconnect_view, name="stripe_disconnect"),
    path("settings/stripe/mode/", stripe.stripe_mode_view, name="stripe_mode"),
    # Platform: catalog, subscriptions, invoices, credits.
    path("plans/", platform.plan_list, name="plans"),
    path("plans/new/", platform.plan_new, name="plan_new"),
    path("plans/<uuid:plan_id>/", platform.plan_detail, name="plan"),
    path("plans/<uuid:plan_id>/rule/", platform.plan_rule, name="plan_rule"),
    path(
        "plans/<uuid:plan_id>/rule/<path:feature_key>/remove/",
        platform.plan_rule_remove,
        name="plan_rule_remove",
    ),
    path(
        "plans/<uuid:plan_id>/<str:action>/",
        platform.plan_status,
        name="plan_status",
    ),
    path("subscriptions/", platform.subscription_list, name="subscriptions"),
    path("subscriptions/new/", platform.subscription_new, name="subscription_new"),
    path(
        "subscriptions/<uuid:subscription_id>/",
        platform.subscription_detail,
        name="subscription",
    ),
    path(
        "subscriptions/<uuid:subscription_id>/<str:action>/",
        platform.subscription_action,
        name="subscription_action",
    ),
    path("invoices/", platform.invoice_list, name="invoices"),
    path("invoices/<uuid:invoice_id>/", platform.invoice_detail, name="invoice"),
    path("invoices/<uuid:invoice_id>/pay/", platform.invoice_pay, name="invoice_pay"),
    path("credits/", platform.credit_pools, name="credits"),
    path("credits/grant/", platform.credit_grant_new, name="credit_grant"),
    path("credits/models/", platform.credit_models, name="credit_models"),
    path("credits/models/new/", platform.credit_model_new, name="credit_model_new"),
    path(
        "credits/models/<uuid:model_id>/archive/",
        platform.credit_model_archive_view,
        name="credit_model_archive",
    ),
    path("credits/allocations/new/", platform.allocation_new, name="allocation_new"),
    path(
        "credits/allocations/<uuid:allocation_id>/remove/",
        platform.allocation_remove,
        name="allocation_remove",
    ),
    path("credits/<uuid:pool_id>/", platform.credit_pool, name="credit_pool"),
    path("credits/<uuid:pool_id>/grant/", platform.credit_pool_grant, name="credit_pool_grant"),
    path("credits/<uuid:pool_id>/deduct/", platform.credit_pool_deduct, name="credit_pool_deduct"),
    # The catalog: customers (their pages are Observe's) and features.
    path("catalog/customers/new/", platform.customer_new, name="customer_new"),
    path(
        "catalog/customers/<uuid:customer_id>/edit/", platform.customer_edit, name="customer_edit"
    ),
    path("catalog/features/", platform.feature_list, name="catalog_features"),
    path("catalog/features/<uuid:feature_id>/edit/", platform.feature_edit, name="feature_edit"),
    # The shell.
    path("switch-environment/", shell.switch_environment, name="switch_environment"),
    path("switch-organization/", shell.switch_organization, name="switch_organization"),
    path("members/", shell.members, name="members"),
    path("members/invite/", shell.member_invite, name="member_invite"),
    path("members/<uuid:membership_id>/role/", shell.member_role, name="member_role"),
    path("members/<uuid:membership_id>/remove/", shell.member_remove, name="member_remove"),
    path(
        "invitations/<uuid:invitation_id>/revoke/",
        shell.invitation_cancel,
        name="invitation_revoke",
    ),
    path("keys/", shell.keys, name="keys"),
    path("keys/new/", shell.key_create, name="key_create"),
    path("keys/<uuid:key_id>/rotate/", shell.key_rotate, name="key_rotate"),
    path("keys/<uuid:key_id>/revoke/", shell.key_revoke, name="key_revoke"),
    path("audit/", shell.audit, name="audit"),
    path("settings/", shell.organization_settings, name="settings"),
    path("settings/target-margin/", observe.target_margin, name="target_margin"),
]
